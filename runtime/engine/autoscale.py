"""`replicas: auto`: more copies of the agents that take longest, from the cluster's free room.

An auto agent starts with one replica. When the run's first unit has finished, every
step's compute time is known; the cluster's free GPUs (its free CPUs when no auto agent
asks for a GPU) are then handed out one replica at a time to the auto agent with the most
step time per replica, so the slowest agent gets the most copies and each ends with a
share about proportional to its time. The new replicas load in the background and take
work as they become ready. Once per run: step times on a warm pipeline do not change
enough to be worth measuring again.
"""
from __future__ import annotations

MAX_AUTO_REPLICAS = 64  # per agent: past this, one driver's dispatch is the limit, not the actors


def share_replicas(step_time: dict, have: dict, need: dict, free: float,
                   limit: int = MAX_AUTO_REPLICAS) -> dict:
    """{group: replicas to add}: one at a time to the group with the most step time per
    replica whose copy still fits in `free` (need: what one copy takes of the resource)."""
    count, added = dict(have), {g: 0 for g in have}
    while True:
        fits = [g for g in count if need[g] <= free + 1e-9 and count[g] < limit and step_time.get(g, 0) > 0]
        if not fits:
            return {g: n for g, n in added.items() if n}
        g = max(fits, key=lambda x: (step_time[x] / count[x], x))
        count[g] += 1
        added[g] += 1
        free -= need[g]


class AutoReplicas:
    """The scheduler's `grow` hook for a session with auto agents."""

    def __init__(self, spec, plan, run_name: str, placement, codec_parts=None, codec_key: str = ""):
        from latentray.runtime.engine.actors import group_agents

        self.spec, self.run_name, self.placement, self.codec_parts = spec, run_name, placement, codec_parts
        self.codec_key = codec_key
        self.groups = [g for g in group_agents(spec, plan.agents) if g.replicas == "auto"]
        self.done = not self.groups

    def __call__(self, step_stats: list) -> list:
        import ray

        from latentray.runtime.engine.actors import launch_replica

        if self.done:
            return []
        self.done = True
        time_of = {g.name: sum(s.get("compute_s") or 0.0 for s in step_stats if s["agent"] in g.agents)
                   for g in self.groups}
        resource = "GPU" if any(g.num_gpus > 0 for g in self.groups) else "CPU"
        need = {g.name: (g.num_gpus if resource == "GPU" else g.num_cpus) or 1.0 for g in self.groups}
        free = ray.available_resources().get(resource, 0.0)
        added = share_replicas(time_of, {g.name: 1 for g in self.groups}, need, free)
        by_name = {g.name: g for g in self.groups}
        return [launch_replica(self.spec, by_name[name], self.run_name, k, self.placement, self.codec_parts,
                               self.codec_key)
                for name, n in added.items() for k in range(1, n + 1)]
