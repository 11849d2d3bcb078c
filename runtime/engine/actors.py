"""Start the actors of a run: one per agent (or per shared actor group), times its replicas.

Agents that name the same `actor` group in the spec share one actor, and so one copy of
the model. An agent with `replicas: N` has N such actors, named `<run>/<agent>#<k>` (one
replica keeps the plain `<run>/<agent>`); `auto` starts one and lets the run add more once
it has measured step times (runtime/engine/autoscale.py). Actors restart on failure; Ray
does not retry their calls itself: the scheduler resubmits the unit whose actor died
(runtime/engine/scheduler.py), so every retry is counted, and a step is a pure function
of its inputs, so a retry cannot count a problem twice.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from latentray.agents.actor import RemoteAgentActor

from latentray.runtime.engine import warm_actors
from latentray.runtime.engine.agent_configs import spec_agent_configs
from latentray.runtime.engine.errors import RunError
from latentray.runtime.engine.replicas import Replica, ReplicaPool

# Each restart reloads the model; an actor that keeps dying stays dead after this many, and
# the batches it would run fail with the reason instead of restarting it forever.
MAX_RESTARTS = 16
MAX_TASK_RETRIES = 0
# On a Ray this process started, how long new actors wait for room that other actors are
# still giving back (a killed actor frees its CPUs a moment after ray.kill returns).
ROOM_WAIT_S = 30.0


@dataclass(frozen=True)
class ActorGroup:
    name: str  # actor name suffix: the agent id, or the shared group id
    model: str  # spec model id
    agents: tuple  # agent ids hosted
    num_cpus: float
    num_gpus: float
    custom: tuple = ()  # (resource label, amount) pairs: Ray custom resources
    replicas: object = 1  # int, or "auto"

    @property
    def initial_replicas(self) -> int:
        """Replicas started with the run (`auto` starts one and grows)."""
        return 1 if self.replicas == "auto" else int(self.replicas)

    def resources(self) -> dict:
        """What one replica asks of a node, as Ray names resources (zero amounts left out)."""
        out = {"CPU": self.num_cpus, "GPU": self.num_gpus, **dict(self.custom)}
        return {k: v for k, v in out.items() if v > 0}


def group_agents(spec, agent_ids) -> list:
    from latentray.topologies.validate import replicas_of

    groups: dict = {}
    for agent_id in agent_ids:
        a = spec.agents[agent_id]
        key = a.actor or agent_id
        groups.setdefault(key, []).append(agent_id)
    out = []
    for key, members in groups.items():
        first = spec.agents[members[0]]
        custom: dict = {}
        for m in members:
            for label, amount in spec.agents[m].resources.custom.items():
                custom[label] = max(custom.get(label, 0.0), amount)
        out.append(ActorGroup(
            name=key, model=first.model, agents=tuple(members),
            num_cpus=max(spec.agents[m].resources.num_cpus for m in members),
            num_gpus=max(spec.agents[m].resources.num_gpus for m in members),
            custom=tuple(sorted(custom.items())), replicas=replicas_of(spec, members[0])))
    return out


def replica_name(run_name: str, group: ActorGroup, index: int) -> str:
    return f"{run_name}/{group.name}" if group.replicas == 1 else f"{run_name}/{group.name}#{index}"


def replica_call(spec, group: ActorGroup, index: int, placement, codec_parts=None) -> tuple:
    """(.options(), constructor arguments) of one replica's actor, its name left out."""
    m = spec.models[group.model]
    model_kwargs = dict(ref=m.ref, dtype=m.dtype, device=m.device, seed=m.seed or 0,
                        trust_remote_code=m.trust_remote_code, num_gpus=group.num_gpus, sha256=m.sha256)
    options = dict(num_cpus=group.num_cpus, num_gpus=group.num_gpus, resources=dict(group.custom),
                   max_restarts=MAX_RESTARTS, max_task_retries=MAX_TASK_RETRIES,
                   **(placement.options(group, index) if placement is not None else {}))
    args = (model_kwargs, spec_agent_configs(group.agents, spec), codec_parts)
    return options, args


def model_files_stamp(ref: str) -> tuple | None:
    """(name, size, mtime) of each file a model ref reads from disk: a GGUF file, or a local
    directory's files; None for refs that name no local file (presets, built-ins, hub ids)."""
    from latentray.agents.models.refs import ModelRef

    parsed = ModelRef.parse(str(ref))
    if parsed.kind not in ("gguf", "local"):
        return None
    path = Path(parsed.target)
    files = [path] if parsed.kind == "gguf" else sorted(f for f in path.iterdir() if f.is_file())
    return tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files)


def _warm_key(options: dict, args: tuple, codec_key: str) -> str | None:
    """The replica's key among warm actors (None when none are kept): its model and codec
    parts, not its agents, whose configs travel with each call. The codec parts count by
    their digest, their ObjectRef being new each run; a model's files by their sizes and
    times, so a file rewritten under the same path makes another actor."""
    if not warm_actors.enabled():
        return None
    model_kwargs = args[0]
    stamp = model_files_stamp(model_kwargs["ref"])
    return warm_actors.actor_key(options, (model_kwargs, stamp, codec_key))


def launch_replica(spec, group: ActorGroup, run_name: str, index: int, placement, codec_parts=None,
                   codec_key: str = "") -> Replica:
    """Create one replica's actor (it loads its model in the background); its ready() call
    says when it has, and where. codec_parts: ObjectRef of the run's fitted codec parts;
    codec_key: their digest, which with the rest of the call makes the replica's warm key."""
    options, args = replica_call(spec, group, index, placement, codec_parts)
    name = replica_name(run_name, group, index)
    actor = RemoteAgentActor.options(name=name, **options).remote(*args)
    return Replica(group.name, index, actor, name, key=_warm_key(options, args, codec_key),
                   holds=tuple(sorted(group.resources().items())))


def start_actors(spec, plan, run_name: str, ready: list | None = None, placement=None,
                 codec_parts=None, codec_key: str = "") -> ReplicaPool:
    """Return the run's ReplicaPool, every model loaded (or a RunError naming the model).
    `ready`, if given, receives each actor's ready() report (pid, node, device, how it loaded).
    placement: a runtime.engine.placement.Placement (default: Ray's own scheduling);
    codec_parts: ObjectRef of {part name: Part} (runtime/codecs/plan.py read_parts), codec_key
    their digest. With warm actors kept (runtime/engine/warm_actors.py), a parked actor of the
    same model, codec parts and resources is taken instead of starting one, and reset to host
    this group's agents."""
    import ray

    groups = group_agents(spec, plan.agents)
    pool = ReplicaPool({a: g.name for g in groups for a in g.agents})
    wanted = [(g, k) for g in groups for k in range(g.initial_replicas)]
    if any(g.replicas == "auto" for g in groups):
        warm_actors.clear()  # auto grows into the free room: parked actors would take it
    taken = [None] * len(wanted)
    if warm_actors.enabled():
        calls = [replica_call(spec, g, k, placement, codec_parts) for g, k in wanted]
        keys = [_warm_key(*call, codec_key) for call in calls]
        names = tuple(replica_name(run_name, g, k) for g, k in wanted)
        taken = warm_actors.take(keys, names, [g.resources() for g, _ in wanted], [args[1] for _, args in calls])
    check_room([replica_call(spec, g, k, placement)[0] for (g, k), warm in zip(wanted, taken) if warm is None])
    launched = [None if warm else launch_replica(spec, g, run_name, k, placement, codec_parts, codec_key)
                for (g, k), warm in zip(wanted, taken)]
    up = []  # (replica, ready report) in plan order
    for (g, k), warm, replica in zip(wanted, taken, launched):
        if warm is not None:
            replica, report = warm
            replica.group, replica.index, replica.load, replica.ready = g.name, k, 0, True
            up.append((replica, {**report, "warm": True}))
            continue
        try:
            up.append((replica, ray.get(replica.handle.ready.remote())))
        except Exception as exc:  # the actor's constructor failed: say which model, and why
            cause = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            kill_actors([r.handle for r in launched if r is not None] + [w[0].handle for w in taken if w])
            raise RunError(f"model {g.model!r} for actor {replica.name} failed to load: {cause}") from None
    for replica, report in up:
        replica.node = report["node"]
        pool.add(replica)
        if ready is not None:
            ready.append({"actor": replica.name, **report})
    return pool


def check_room(options: list) -> None:
    """Refuse actors that the free room of a Ray this process started cannot hold: nothing
    can add resources to it, so they would wait forever (another run or Session of this
    process holds the rest). Actors in a placement group are left out: their room is
    reserved already. Room still being given back is waited for, up to ROOM_WAIT_S."""
    import ray

    from latentray.runtime.engine import ray_setup

    if not ray_setup.STARTED_LOCALLY:
        return  # on a cluster an autoscaler may add nodes, and other drivers' actors may end
    need: dict = {}
    for o in options:
        if not isinstance(o.get("scheduling_strategy", "DEFAULT"), str):
            continue
        for resource, amount in (("CPU", o.get("num_cpus") or 0), ("GPU", o.get("num_gpus") or 0),
                                 *(o.get("resources") or {}).items()):
            need[resource] = need.get(resource, 0.0) + amount
    deadline = time.monotonic() + ROOM_WAIT_S
    while True:
        free = ray.available_resources()
        short = {k: v for k, v in need.items() if v > free.get(k, 0.0) + 1e-9}
        if not short:
            return
        if time.monotonic() >= deadline:
            wants = ", ".join(f"{v:g} {k} (free: {free.get(k, 0.0):g})" for k, v in short.items())
            raise RunError(f"this run's actors need {wants} on the Ray this process started, and other runs or "
                           "Sessions of this process hold the rest; close them first, or start Ray with more "
                           "resources (ray.init(num_cpus=N) before latentray) or join a cluster (--address)")
        time.sleep(0.2)


def kill_actors(actors) -> None:
    import ray

    unique = {actor._actor_id: actor for actor in actors}
    for actor in unique.values():
        ray.kill(actor, no_restart=True)


def actor_names(spec, plan, run_name: str) -> list:
    """The names the dashboard shows: `<run>/<agent>` (or `<run>/<actor group>` for shared
    ones), with `#<k>` per replica where an agent has more than one."""
    names = set()
    for g in group_agents(spec, plan.agents):
        names.update(replica_name(run_name, g, k) for k in range(g.initial_replicas))
    return sorted(names)
