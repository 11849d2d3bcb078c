"""RunSession: everything between a plan and its answers, for `run`, `eval`, the gateway and
the Python API's latentray.Session.

    session = RunSession(spec, plan, run_name).start()   # pre-flight, Ray, replicas, groups, steps
    for done in session.run(questions, todo):             # the scheduler; metrics recorded
        ...                                               # BatchDone, numbered as `questions`
    session.close()                                       # groups destroyed, actors killed
                                                          # (or parked: runtime/engine/warm_actors.py)

Each agent's actors form a replica pool (runtime/engine/replicas.py) placed as the spec's
`placement` says (runtime/engine/placement.py); `replicas: auto` grows the pools once
step times are measured (runtime/engine/autoscale.py).

A session can run many question lists on the same warm actors (the gateway does, from
several threads at once: Ray queues their calls on each actor). Problems keep the
caller's numbering from the first call to the last: nothing is renumbered on the way.
"""
from __future__ import annotations

import contextlib
import hashlib
import pickle
import uuid

from latentray.runtime.engine import warm_actors
from latentray.runtime.engine.actors import actor_names, group_agents, kill_actors, start_actors
from latentray.runtime.engine.groups import open_groups
from latentray.runtime.engine.metrics import RunMetrics
from latentray.runtime.engine.preflight import check_fits, needed_resources, preflight, rejected_questions
from latentray.runtime.engine.scheduler import BatchDone, run_plan
from latentray.runtime.engine.steps import spec_steps


def in_flight_limit(spec, plan) -> int | None:
    """run.max_in_flight as a number of batches (None: no limit). `auto` gives every actor
    (every replica) a batch to work on plus one queued behind them, so pipelining keeps
    everyone busy while the object store holds the messages of a bounded number of batches;
    replicas that `replicas: auto` adds later raise it by one each."""
    value = spec.run.max_in_flight
    if value == "all":
        return None
    if value == "auto":
        return sum(g.initial_replicas for g in group_agents(spec, plan.agents)) + 1
    return int(value)


class RunSession:
    def __init__(self, spec, plan, run_name: str | None = None, address: str | None = None,
                 verbose: bool = False):
        self.spec, self.plan, self.address, self.verbose = spec, plan, address, verbose
        self.run_name = run_name or f"{spec.name}-{uuid.uuid4().hex[:6]}"
        self.pool = None  # the ReplicaPool, once started
        self.placement = None
        self.codec_parts = None  # ObjectRef of the fitted codec parts every actor gets
        self.codec_key = ""  # their digest: part of a warm actor's key (runtime/engine/warm_actors.py)
        self.actor_info: list = []  # each actor's ready() report: pid, device, how it loaded
        self.max_in_flight = in_flight_limit(spec, plan)
        self.metrics = RunMetrics(self.run_name)
        self.steps: list = []
        self._exit = contextlib.ExitStack()
        self._checked = False

    @property
    def actor_names(self) -> list:
        """The actors' names as the dashboard shows them: the live pool's once started."""
        if self.pool is not None:
            return sorted(r.name for r in self.pool.all())
        return actor_names(self.spec, self.plan, self.run_name)

    def check(self) -> "RunSession":
        """Pre-flight and Ray, nothing started: what a run would refuse is raised here."""
        from latentray.runtime.engine import ray_setup

        if self._checked:
            return self
        preflight(self.spec, self.plan, self.address)
        ray_setup.ensure_ray(address=self.address, num_cpus=needed_resources(self.spec, self.plan)["CPU"],
                             object_store_bytes=self.spec.limits.object_store_bytes, verbose=self.verbose)
        check_fits(self.spec, self.plan, ray_setup.STARTED_LOCALLY)
        self._checked = True
        return self

    def start(self) -> "RunSession":
        """Pre-flight, Ray, the actors with their models loaded, rdt groups, compiled steps
        (once: a started session returns at once)."""
        import ray

        from latentray.runtime.codecs.plan import read_parts
        from latentray.runtime.engine.placement import Placement

        if self.pool is not None:
            return self
        self.check()
        parts = read_parts(self.spec, self.plan)
        self.codec_parts = ray.put(parts) if parts else None
        self.codec_key = hashlib.sha256(pickle.dumps(parts)).hexdigest() if parts and warm_actors.enabled() else ""
        self.placement = Placement(self.spec, self.plan, self.run_name)
        try:
            self.pool = start_actors(self.spec, self.plan, self.run_name, ready=self.actor_info,
                                     placement=self.placement, codec_parts=self.codec_parts,
                                     codec_key=self.codec_key)
        except BaseException:
            self.placement.close()
            raise
        try:
            self._exit.enter_context(open_groups(self.spec, self.plan, self.pool))
            self.steps = spec_steps(self.spec, self.plan)
        except BaseException:
            self.close()
            raise
        return self

    def rejected(self, questions: list, known: dict | None = None) -> dict:
        """{index: reason} of the questions that cannot run (known ones plus each the checks refuse)."""
        return rejected_questions(self.spec, questions, known)

    def run(self, questions: list, todo: list | None = None, rejected: dict | None = None, on_wait=None,
            on_submit=None, on_start=None, steps: list | None = None):
        """Yield a BatchDone per unit as it finishes, numbered as `questions`: the problems
        `todo` (default all), less those known bad (`rejected`, {index: reason}) or that the
        question checks refuse: those are reported failed first, unrun. The actors start on
        the first call with something to run; on_start() is called once they are up, before
        the first step is submitted. Metrics are recorded as units finish. steps: compiled for
        other agent configs (runtime/engine/steps.py spec_steps; default the spec's own)."""
        todo = list(range(len(questions))) if todo is None else list(todo)
        wanted = set(todo)
        bad = {i: why for i, why in self.rejected(questions, rejected).items() if i in wanted}
        if bad:
            self.metrics.problems_failed(len(bad))
            yield BatchDone(-1, [], [], [], [], failed=bad)
        valid = [i for i in todo if i not in bad]
        if not valid:
            return
        from latentray.runtime.engine.autoscale import AutoReplicas

        self.start()
        if on_start:
            on_start()
        grow = AutoReplicas(self.spec, self.plan, self.run_name, self.placement, self.codec_parts,
                            self.codec_key)
        for done in run_plan(self.plan, self.pool, questions, self.spec.run.batch_size,
                             self.spec.channels.rdt_backend, self.max_in_flight, steps or self.steps, on_wait=on_wait,
                             metrics=self.metrics, limits=self.spec.limits, on_submit=on_submit, indices=valid,
                             grow=None if grow.done else grow,
                             in_flight_per_replica=self.spec.run.max_in_flight == "auto"):
            if done.indices:
                self.metrics.batch_done(done.step_stats, len(done.indices))
            yield done

    @property
    def started(self) -> bool:
        return self.pool is not None

    def close(self) -> None:
        try:
            self._exit.close()
        finally:
            if self.pool is not None:  # warm actors kept, if asked: the rest killed
                kill_actors([r.handle for r in warm_actors.park(self.pool.all())]
                            + [r.handle for r, _ in self.pool.left])
                self.pool = None
            if self.placement is not None:
                self.placement.close()
                self.placement = None

    def __enter__(self) -> "RunSession":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
