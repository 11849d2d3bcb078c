"""run_plan: push problems through a compiled plan on running actors, unit by unit, and
account for every one of them: answered once, or failed with its reason.

A unit is a list of problems submitted together (a batch, or a piece of one). Every step
of every unit is watched, not only the last: a unit finishes when all its steps have, and
fails as soon as one of them does. What can happen to a unit and what the scheduler does:
  all steps finish           its answers are yielded
  an actor died under it     resubmitted whole (steps are pure functions of their inputs,
  (or its node, or an        so nothing counts twice), up to limits.retries times, counted,
  object with its node)      to replicas that answer: the ones it used are asked whether
                             they are back, and get nothing until they are; one that never
                             comes back leaves the pool and the run goes on with the rest
  a step refused some rows   (ProblemInputError: a prompt too long) those fail; the rest
                             are resubmitted without them
  a step timed out           its problems fail with the reason
  any other step error       a unit of several problems is split into single problems, so
                             one bad problem cannot take its batch with it; a single one fails
  a step hangs               (no step finished for longer than the steps' timeouts allow)
                             its actor is killed and restarts; the unit counts as a fault
  the run timeout passes     every unfinished problem fails with the reason
Problems keep the caller's numbering throughout: a unit holds indices into `questions`.
Each step goes to a replica of its agent (runtime/engine/replicas.py) as the unit is
submitted; nothing waits on an actor but ray.wait, so one restarting replica never holds
up the others.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from latentray.agents.errors import ProblemInputError, StepTimeoutError, first_line
from latentray.runtime.engine.replicas import ReplicaPool
from latentray.runtime.engine.steps import compile_steps, submit_unit
from latentray.runtime.engine.vote import majority


@dataclass
class BatchDone:
    batch: int  # the unit's number (a batch's own number unless it was split)
    indices: list  # index in the question list of each problem answered, in order
    answers: list
    tokens: list  # decoded tokens per answered problem
    step_stats: list
    retries: int = 0  # times the unit was resubmitted after an actor died under it
    in_flight: int = 0  # units submitted and unfinished when it finished, itself included
    failed: dict = field(default_factory=dict)  # question index -> reason, for problems that failed


@dataclass
class _Unit:
    id: int
    indices: list
    attempt: int = 0
    refs: dict = field(default_factory=dict)  # step id -> [output refs..., stats ref]
    stats: dict = field(default_factory=dict)  # step id -> stats, as each step finishes
    open: set = field(default_factory=set)  # stats refs not finished yet
    placed: dict = field(default_factory=dict)  # step id -> the Replica it was sent to


# How long a restarting (or starting) replica may take to load its model before it is
# taken as gone for good and leaves the pool.
RESTART_WAIT_S = 300.0
PROBE_AGAIN_S = 0.2  # between asking a restarting actor whether it is back
SETTLE_S = 2.0  # at a run's end, how long the probes still out may take to answer


def fault_errors() -> tuple:
    """Errors of an actor or worker dying or an object lost with its node (not of a step's code)."""
    import ray.exceptions as rex

    return rex.RayActorError, rex.ObjectLostError, rex.WorkerCrashedError, rex.OutOfMemoryError, rex.NodeDiedError


class _Scheduler:
    def __init__(self, plan, handles, questions, steps, backend, max_in_flight, limits, metrics, on_submit=None,
                 grow=None, in_flight_per_replica=False):
        self.plan, self.questions, self.steps = plan, questions, steps
        self.pool = ReplicaPool.of(handles)
        self.backend, self.max_in_flight, self.limits, self.metrics = backend, max_in_flight, limits, metrics
        self.on_submit, self.grow, self.in_flight_per_replica = on_submit, grow, in_flight_per_replica
        self.queue: deque = deque()
        self.pending: dict = {}  # unit id -> unit, in submission order
        self.owner: dict = {}  # unfinished stats ref -> its unit
        self.probes: dict = {}  # ready() ref -> (replica, since when it has not answered)
        self.outbox: list = []  # outcomes decided outside step_done (problems no replica can run)
        self.next_id = 0

    def add(self, indices: list, attempt: int = 0, front: bool = False) -> None:
        unit = _Unit(self.next_id, list(indices), attempt)
        self.next_id += 1
        (self.queue.appendleft if front else self.queue.append)(unit)

    def fill(self) -> None:
        while self.queue and (self.max_in_flight is None or len(self.pending) < self.max_in_flight):
            gone = self.pool.gone(self.plan.agents)
            if gone:  # no replica of some agent is left: nothing queued can run
                reason = f"agent {gone[0]!r} has no replica left: {self.pool.why_gone(gone[0])}"
                units, self.queue = list(self.queue), deque()
                self.outbox += [self.failed(u, {i: reason for i in u.indices}) for u in units]
                return
            if self.pool.waiting_for(self.plan.agents):
                return  # a replica is restarting: the queue waits for it (probe_done refills)
            unit = self.queue.popleft()
            unit.placed = {}
            unit.refs = submit_unit(self.steps, self.pool, [self.questions[i] for i in unit.indices],
                                    unit.id, self.backend, placed=unit.placed)
            unit.stats, unit.open = {}, {r[-1] for r in unit.refs.values()}
            self.pending[unit.id] = unit
            self.owner.update({ref: unit for ref in unit.open})
            if self.on_submit:
                self.on_submit(list(unit.indices), {sid: r[-1] for sid, r in unit.refs.items()})

    def step_of(self, unit, ref) -> str:
        return next(sid for sid, r in unit.refs.items() if r[-1] == ref)

    def drop(self, unit) -> None:
        """Stop watching a unit (finished, failed or requeued); its late steps are ignored."""
        self.pending.pop(unit.id, None)
        for ref in unit.open:
            self.owner.pop(ref, None)
            unit.placed[self.step_of(unit, ref)].load -= 1
        unit.open = set()

    # -- replicas that may be gone: ask them, without waiting ----------------------------------
    def probe(self, replica, since: float | None = None) -> None:
        """Send nothing more to `replica` until its ready() answers."""
        replica.ready = False
        self.probes[replica.handle.ready.remote()] = (replica, time.monotonic() if since is None else since)

    def probe_done(self, ref) -> None:
        import ray

        replica, since = self.probes.pop(ref)
        try:
            report = ray.get(ref)
        except ray.exceptions.ActorUnavailableError:  # restarting: ask again (expire_probes gives up)
            time.sleep(PROBE_AGAIN_S)
            self.probe(replica, since)
            self.expire_probes()
            return
        except ray.exceptions.RayActorError as exc:  # dead for good (restarts used up, or failed to load)
            self.lose(replica, first_line(exc))
            return
        first = not replica.node
        replica.node = (report.get("node") if isinstance(report, dict) else None) or replica.node or "?"
        replica.ready = True
        if first and self.in_flight_per_replica and self.max_in_flight is not None:
            self.max_in_flight += 1  # a new replica gets a unit of its own in flight

    def expire_probes(self) -> None:
        """A replica whose ready() has not answered for RESTART_WAIT_S (pending in Ray: say,
        pinned to a node that is gone) leaves the pool."""
        now = time.monotonic()
        for ref, (replica, since) in list(self.probes.items()):
            if now - since >= RESTART_WAIT_S:
                del self.probes[ref]
                self.lose(replica, f"did not come back within {RESTART_WAIT_S:g} s")

    def probe_deadline(self) -> float:
        return min((since for _, since in self.probes.values()), default=float("inf")) + RESTART_WAIT_S

    def settle(self, timeout_s: float = SETTLE_S) -> None:
        """At the end of a run: hear the probes still out (a dead replica answers at once),
        so a replica that died for good is reported even when no unit was left to notice."""
        import ray

        deadline = time.monotonic() + timeout_s
        while self.probes and time.monotonic() < deadline:
            done, _ = ray.wait(list(self.probes), num_returns=1, timeout=max(deadline - time.monotonic(), 0.0))
            if not done:
                return
            self.probe_done(done[0])

    def lose(self, replica, reason: str) -> None:
        self.pool.remove(replica, reason)
        if self.metrics:
            self.metrics.replica_lost()

    def maybe_grow(self, stats: list) -> None:
        """Replicas that `auto` adds once step times are measured: they join as they load."""
        if self.grow is None:
            return
        for replica in self.grow(stats):
            replica.ready = False
            self.pool.add(replica)
            self.probe(replica)

    def failed(self, unit, reasons: dict, in_flight: int = 0) -> BatchDone:
        if self.metrics:
            self.metrics.problems_failed(len(reasons))
        return BatchDone(unit.id, [], [], [], [], unit.attempt, in_flight, dict(reasons))

    def step_done(self, ref):
        """A step of some unit finished (or failed): the unit's outcome when it has one, a
        BatchDone, or None while its other steps run or after it went back into the queue."""
        import ray

        unit = self.owner.pop(ref)
        unit.open.discard(ref)
        in_flight = len(self.pending)
        step_id = self.step_of(unit, ref)
        unit.placed[step_id].load -= 1
        try:
            try:
                unit.stats[step_id] = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:
                if isinstance(exc, fault_errors()):
                    raise
                if isinstance(getattr(exc, "cause", None), fault_errors()):
                    raise exc.cause from None  # the fault itself, so the retry below catches it
                self.drop(unit)
                return self.step_failed(unit, step_id, exc, in_flight)
            if unit.open:
                return None
            self.drop(unit)
            per_step = [ray.get(unit.refs[sid][0]) for sid in self.plan.answer_steps]
        except fault_errors() as exc:
            self.drop(unit)
            return self.fault(unit, exc, in_flight)
        n = len(unit.indices)
        stats = [unit.stats[sid] for sid in unit.refs]  # in plan order
        answers = [self.answer([p["texts"][r] for p in per_step]) for r in range(n)]
        tokens = [sum(s["tokens"][r] for s in stats) for r in range(n)]
        self.maybe_grow(stats)
        return BatchDone(unit.id, list(unit.indices), answers, tokens, stats, unit.attempt, in_flight)

    def answer(self, texts: list) -> str:
        return majority(texts) if self.plan.answer_mode == "majority" else texts[0]

    def fault(self, unit, exc, in_flight: int):
        # the replicas this unit used may be dead or restarting: none gets work until it answers
        for replica in {id(r): r for r in unit.placed.values()}.values():
            if replica.ready and replica in self.pool.all():
                self.probe(replica)
        if unit.attempt < self.limits.retries:
            if self.metrics:
                self.metrics.problems_retried(len(unit.indices))
            self.queue.appendleft(_Unit(unit.id, unit.indices, unit.attempt + 1))
            return None
        reason = (f"an agent's actor died and the unit's {self.limits.retries} retries (limits.retries) ran "
                  f"out: {first_line(exc)}")
        return self.failed(unit, {i: reason for i in unit.indices}, in_flight)

    def step_failed(self, unit, step_id: str, exc, in_flight: int):
        cause = getattr(exc, "cause", None) or exc
        where = f"step {step_id}: {type(cause).__name__}: {first_line(cause)}"
        if isinstance(cause, ProblemInputError):
            bad = {unit.indices[r]: f"step {step_id}: {why}" for r, why in cause.rows.items()
                   if 0 <= r < len(unit.indices)}
            rest = [i for i in unit.indices if i not in bad]
            if bad:
                if rest:
                    self.add(rest, unit.attempt, front=True)
                return self.failed(unit, bad, in_flight)
        if isinstance(cause, StepTimeoutError) or len(unit.indices) == 1:
            return self.failed(unit, {i: where for i in unit.indices}, in_flight)
        for i in reversed(unit.indices):  # one at a time, in order, ahead of the queue
            self.add([i], unit.attempt, front=True)
        return None

    def time_out(self, reason: str) -> BatchDone:
        """Fail every problem not finished; cancel what is still queued on the actors."""
        import ray

        units = list(self.pending.values()) + list(self.queue)
        self.probes.clear()
        for unit in list(self.pending.values()):
            for refs in unit.refs.values():
                for ref in refs:
                    try:
                        ray.cancel(ref)
                    except Exception:  # already finished, or not cancellable: it is dropped either way
                        pass
            self.drop(unit)
        self.queue.clear()
        indices = [i for u in units for i in u.indices]
        return self.failed(_Unit(-1, indices), {i: reason for i in indices})

    def unstick(self) -> None:
        """No step finished for longer than the steps' timeouts allow: the oldest unit's first
        unfinished step hangs where the timeout cannot reach (inside one call). Kill its actor;
        it restarts and the units it held count as faults."""
        import ray

        unit = next(iter(self.pending.values()))
        for step_id, refs in unit.refs.items():
            if refs[-1] in unit.open:
                ray.kill(unit.placed[step_id].handle, no_restart=False)
                return


def run_plan(plan, handles, questions: list, batch_size: int, backend="nccl",
             max_in_flight: int | None = None, steps: list | None = None, on_wait=None, metrics=None,
             limits=None, on_submit=None, indices: list | None = None, grow=None, in_flight_per_replica=False):
    """Run the problems `indices` of `questions` (default: all); yields a BatchDone per unit as
    it finishes (in finishing order), failures included, so each problem appears in exactly
    one BatchDone's indices or failed, numbered as in `questions`.
    handles: the run's ReplicaPool, or {agent id: actor handle}.
    At most `max_in_flight` units are submitted and unfinished at once (None: all), so the
    object store holds the messages of that many batches whatever the problem count;
    in_flight_per_replica: each replica that joins later raises it by one.
    limits: the spec's LimitsSpec (defaults if None). on_wait(): called each time the
    driver wakes from ray.wait (a sampler's hook). on_submit(indices, {step id: stats ref}):
    called as each unit is submitted, so a caller can follow its steps as they finish.
    grow(step stats of a finished unit) -> new Replicas (launched, loading) to add."""
    import ray

    from latentray.topologies.spec import LimitsSpec

    limits = limits or LimitsSpec()
    steps = steps if steps is not None else compile_steps(plan, backend, limits=limits)
    todo = list(range(len(questions))) if indices is None else list(indices)
    sched = _Scheduler(plan, handles, questions, steps, backend, max_in_flight, limits, metrics, on_submit,
                       grow, in_flight_per_replica)
    for start in range(0, len(todo), batch_size):
        sched.add(todo[start:start + batch_size])
    run_deadline = time.monotonic() + limits.run_timeout_s
    hang_after = limits.step_timeout_s * (len(steps) + 1) + 5.0  # plus Ray's own scheduling and transfers
    last_progress = time.monotonic()
    sched.fill()
    while sched.pending or sched.queue or sched.outbox:
        while sched.outbox:
            yield sched.outbox.pop(0)
        if not (sched.pending or sched.queue):
            break
        if not (sched.owner or sched.probes):  # queued work that nothing running can ever unblock
            sched.outbox.append(sched.time_out("no replica could take the problem's steps"))
            continue
        now = time.monotonic()
        wait = min(run_deadline - now, last_progress + hang_after - now, sched.probe_deadline() - now)
        done, _ = ray.wait(list(sched.owner) + list(sched.probes), num_returns=1, timeout=max(wait, 0.0))
        if on_wait:
            on_wait()
        if sched.probes and time.monotonic() >= sched.probe_deadline():
            sched.expire_probes()
            sched.fill()
            continue
        if not done:
            if time.monotonic() >= run_deadline:
                yield sched.time_out(f"the run passed limits.run_timeout_s = {limits.run_timeout_s:g} s "
                                     "before this problem finished; raise the limit or run fewer problems")
                return
            if sched.pending:
                sched.unstick()
            last_progress = time.monotonic()
            continue
        last_progress = time.monotonic()
        if done[0] in sched.probes:
            sched.probe_done(done[0])
            sched.fill()
            continue
        outcome = sched.step_done(done[0])
        sched.fill()
        if outcome is not None:
            yield outcome
    sched.settle()
