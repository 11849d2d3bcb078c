"""run_spec: one run of a question list through a spec, start to finish, as a RunResult.

The session (runtime/engine/session.py) does the work: pre-flight, Ray, actors, steps and
the scheduler. This module gathers what it yields into one in-memory result: answers,
tokens, step stats, the message trace, failures, and the run's peaks.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from latentray.runtime.engine.results import trace_rows
from latentray.runtime.engine.session import RunSession


@dataclass
class RunResult:
    run_name: str
    questions: list
    answers: list  # one string per question (None: not run, or failed)
    tokens: list  # tokens decoded per question, over every text-producing step
    steps: list = field(default_factory=list)  # one stats dict per step call
    trace: list = field(default_factory=list)  # one row per message delivered
    wall_s: float = 0.0  # start to finish, actor start (model loading) included
    run_s: float = 0.0  # first step submitted to last answer in
    actor_names: list = field(default_factory=list)
    actor_info: list = field(default_factory=list)  # each actor's ready() report: pid, device, load
    max_in_flight: int | None = None  # batches submitted ahead (None: all)
    peak_in_flight: int = 0  # most batches submitted and unfinished at once
    peak_store_bytes: int | None = None  # sampled peak of the object stores' bytes in use
    spilled_bytes: int | None = None  # spilled to disk during the run
    retries: int = 0  # problems resubmitted after an actor died under them
    failed: dict = field(default_factory=dict)  # question index -> why it failed (its answer stays None)
    units: dict = field(default_factory=dict)  # unit (batch) number -> indices of the problems it answered
    replicas: dict = field(default_factory=dict)  # actor group -> replicas live at the end
    replicas_lost: list = field(default_factory=list)  # (replica name, why) of those that died for good

    def summary(self, spec, plan) -> dict:
        return {
            "run": self.run_name, "topology": plan.topology, "method": spec.run.method,
            "questions": len(self.questions), "agents": list(plan.agents),
            "latent_steps": {a: spec.agents[a].latent_steps if spec.run.method != "text" else 0
                             for a in plan.agents},
            "tokens_decoded": sum(self.tokens), "messages": len(self.trace),
            "message_bytes": sum(r["bytes"] for r in self.trace), "wall_s": round(self.wall_s, 3),
            "run_s": round(self.run_s, 3), "max_in_flight": self.max_in_flight,
            "peak_in_flight": self.peak_in_flight,
            "peak_object_store_bytes": self.peak_store_bytes, "spilled_bytes": self.spilled_bytes,
            "problems_retried": self.retries, "problems_failed": len(self.failed),
            "model_loads": [{"actor": a["actor"], **a["load"]} for a in self.actor_info],
            "replicas": self.replicas, "replicas_lost": [{"replica": n, "why": w} for n, w in self.replicas_lost],
            "steps_per_replica": self.steps_per_replica(),
            "cross_node_bytes": sum(r["bytes"] for r in self.trace if r.get("cross_node")),
            "nodes": len({s.get("node") for s in self.steps if s.get("node")}),
        }

    def steps_per_replica(self) -> dict:
        counts: dict = {}
        for s in self.steps:
            counts[s.get("actor") or s["agent"]] = counts.get(s.get("actor") or s["agent"], 0) + 1
        return dict(sorted(counts.items()))

    def add(self, done) -> None:
        """One unit's outcome (a BatchDone, numbered as this result's questions)."""
        n = len(done.indices)
        for i, answer, tokens in zip(done.indices, done.answers, done.tokens):
            self.answers[i], self.tokens[i] = answer, tokens
        self.failed.update(done.failed)
        self.steps.extend(done.step_stats)
        self.retries += done.retries * (n + len(done.failed))
        self.peak_in_flight = max(self.peak_in_flight, done.in_flight)
        if n:  # a unit of failures only has no steps to record
            self.units[done.batch] = list(done.indices)
            for s in done.step_stats:
                self.trace.extend(trace_rows(self.run_name, s, done.indices[0]))


def replica_counts(pool) -> dict:
    return {group: len(replicas) for group, replicas in pool.replicas.items()}


def run_spec(spec, plan, questions: list, run_name: str | None = None, progress=None,
             on_batch=None, address: str | None = None, rejected: dict | None = None,
             todo: list | None = None, verbose: bool = False, session: RunSession | None = None) -> RunResult:
    """Start actors, run the questions `todo` (default all) through the plan, stop the actors.
    Every problem is answered once or reported failed with its reason (result.failed); the
    run goes on. Indices everywhere (result, on_batch, rejected) are positions in `questions`.
    progress: a runtime.engine.progress.Progress (or anything with update(problems, tokens));
    on_batch(BatchDone): called as each unit finishes, failures too;
    rejected: {index: reason} of questions already known to be bad (they are not run);
    session: a RunSession of this spec to run on, left open (its actors stay for the next
    call: the Python API's latentray.Session); by default one is started and closed here."""
    from latentray.runtime.engine.store_usage import StorePeak

    t0 = time.perf_counter()
    own = session is None
    session = RunSession(spec, plan, run_name, address, verbose=verbose).check() if own else session.check()
    todo = list(range(len(questions))) if todo is None else list(todo)
    result = RunResult(session.run_name, list(questions), [None] * len(questions), [0] * len(questions),
                       max_in_flight=session.max_in_flight)

    def report(done) -> None:
        result.add(done)
        if on_batch:
            on_batch(done)
        if progress:
            progress.update(len(done.indices) + len(done.failed), sum(done.tokens))

    t_run = []  # when the actors were up: run_s counts from there, model loading excluded

    def started() -> None:
        t_run.append(time.perf_counter())
        if hasattr(progress, "start"):
            progress.start()

    try:
        with StorePeak() as store:
            for done in session.run(questions, todo, rejected, on_wait=store.sample_soon, on_start=started):
                report(done)
            result.run_s = time.perf_counter() - t_run[0] if t_run else 0.0
        result.peak_store_bytes, result.spilled_bytes = store.peak_bytes, store.spilled_bytes
        if session.started:  # none started for a run of rejected questions only
            result.actor_info, result.actor_names = session.actor_info, session.actor_names
            result.replicas_lost = list(session.pool.removed)
            result.replicas = replica_counts(session.pool)
    finally:
        if own:
            session.close()
    result.wall_s = time.perf_counter() - t0
    return result
