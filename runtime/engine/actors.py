"""Start one actor per agent (or per shared actor group), named `<run>/<agent>`.

Agents that name the same `actor` group in the spec share one actor, and so one copy of
the model. Actors restart on failure; Ray does not retry their calls itself: the scheduler
resubmits the unit whose actor died (runtime/engine/scheduler.py), so every retry is counted, and
a step is a pure function of its inputs, so a retry cannot count a problem twice.
"""
from __future__ import annotations

from dataclasses import dataclass

from agents.actor import RemoteAgentActor

from runtime.engine.agent_configs import agent_configs_for
from runtime.engine.errors import RunError

# Each restart reloads the model; an actor that keeps dying stays dead after this many, and
# the batches it would run fail with the reason instead of restarting it forever.
MAX_RESTARTS = 16
MAX_TASK_RETRIES = 0


@dataclass(frozen=True)
class ActorGroup:
    name: str  # actor name suffix: the agent id, or the shared group id
    model: str  # spec model id
    agents: tuple  # agent ids hosted
    num_cpus: float
    num_gpus: float


def group_agents(spec, agent_ids) -> list:
    groups: dict = {}
    for agent_id in agent_ids:
        a = spec.agents[agent_id]
        key = a.actor or agent_id
        groups.setdefault(key, []).append(agent_id)
    out = []
    for key, members in groups.items():
        first = spec.agents[members[0]]
        out.append(ActorGroup(
            name=key, model=first.model, agents=tuple(members),
            num_cpus=max(spec.agents[m].resources.num_cpus for m in members),
            num_gpus=max(spec.agents[m].resources.num_gpus for m in members)))
    return out


def start_actors(spec, plan, run_name: str, ready: list | None = None) -> dict:
    """Return {agent id: actor handle}, all models loaded (or a RunError naming the model).
    `ready`, if given, receives each actor's ready() report (pid, device, how it loaded)."""
    import ray

    handles, by_group = {}, {}
    for g in group_agents(spec, plan.agents):
        m = spec.models[g.model]
        model_kwargs = dict(ref=m.ref, dtype=m.dtype, device=m.device, seed=m.seed or 0,
                            trust_remote_code=m.trust_remote_code, num_gpus=g.num_gpus, sha256=m.sha256)
        actor = RemoteAgentActor.options(
            name=f"{run_name}/{g.name}", num_cpus=g.num_cpus, num_gpus=g.num_gpus,
            max_restarts=MAX_RESTARTS, max_task_retries=MAX_TASK_RETRIES,
        ).remote(model_kwargs, agent_configs_for(g.agents, spec, latent=spec.run.method != "text"))
        by_group[g] = actor
        for agent_id in g.agents:
            handles[agent_id] = actor
    for g, actor in by_group.items():
        try:
            report = ray.get(actor.ready.remote())
        except Exception as exc:  # the actor's constructor failed: say which model, and why
            cause = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            kill_actors(by_group.values())
            raise RunError(f"model {g.model!r} for actor {run_name}/{g.name} failed to load: {cause}") from None
        if ready is not None:
            ready.append({"actor": f"{run_name}/{g.name}", **report})
    return handles


def kill_actors(actors) -> None:
    import ray

    unique = {actor._actor_id: actor for actor in actors}
    for actor in unique.values():
        ray.kill(actor, no_restart=True)


def actor_names(spec, plan, run_name: str) -> list:
    """The names the dashboard shows: `<run>/<agent>`, or `<run>/<actor group>` for shared ones."""
    return sorted({f"{run_name}/{spec.agents[a].actor or a}" for a in plan.agents})
