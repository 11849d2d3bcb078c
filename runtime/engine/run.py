"""The engine: run problems through a plan on Ray actors.

For each batch, every step is submitted as an actor call whose arguments are the
ObjectRefs of the messages it reads; nothing waits, so different agents work on
different batches at once (pipelining). The driver holds references, never tensors,
and drops a batch's references once its answers are in, so the object store frees them.
Backpressure: at most run.max_in_flight batches are submitted and unfinished, so the
store holds a bounded number of batches' messages however many problems there are.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field, replace

from agents.step_call import InputEdge, StepCall

from runtime.codecs.plan import check_codec_parts, codec_dir, edge_codec
from runtime.engine.actors import check_fits, check_model_refs, kill_actors, needed_resources, start_actors
from runtime.engine.errors import RunError
from runtime.engine.scheduler import BatchDone, run_plan
from runtime.engine.transports import check_transports, open_groups, step_transport


@dataclass
class RunResult:
    run_name: str
    questions: list
    answers: list  # one string per question
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
        }


def _variant_key(edge, codecs: dict) -> tuple:
    """What a receiver needs the sender to have returned: its compression and encoding."""
    return tuple(edge.compression), codecs[edge].encode if edge in codecs else None


def output_variants(plan, step, codecs: dict | None = None) -> tuple:
    """Distinct (compression list, encoding) pairs over a step's outgoing edges: the
    objects the step returns, one each. codecs: {edge: EdgeCodec}."""
    variants = []
    for edge in plan.outgoing(step.id):
        key = _variant_key(edge, codecs or {})
        if key not in variants:
            variants.append(key)
    return tuple(variants) or (((), None),)


@dataclass(frozen=True)
class StepSubmission:
    """How one step is submitted; the same for every batch but for the batch number."""
    call: StepCall
    transport: str  # of its outgoing edges
    inbox: tuple  # (source step id, index of the output variant it reads) per input


def compile_steps(plan, backend: str = "nccl", checksum: bool = False, codec_for=None,
                  hidden_scope: str = "latent", codec_dir: str = "", limits=None) -> list:
    """Everything about each step's actor call that depends on the plan alone, once per run.
    codec_for(edge) -> EdgeCodec (runtime/codec_plan.py); None: no codec is applied.
    limits: the spec's LimitsSpec, whose per-step bounds every call carries (None: unbounded)."""
    bounds = {} if limits is None else dict(timeout_s=limits.step_timeout_s, max_prompt_tokens=limits.max_prompt_tokens,
                                             max_message_bytes=limits.max_message_bytes)
    codecs = {e: codec_for(e) for e in plan.edges} if codec_for else {}
    variants = {s.id: output_variants(plan, s, codecs) for s in plan.steps}
    out = []
    for step in plan.steps:
        inputs = tuple(InputEdge(e.src, e.kind, e.codec, tuple(e.compression), e.transport,
                                 backend if e.transport == "rdt" else "",
                                 codecs[e].decode if e in codecs else None) for e in step.inputs)
        mine = variants[step.id]
        call = StepCall(step.id, step.agent, step.action, step.emit, step.kv_scope, inputs,
                        tuple(c for c, _ in mine), step.round, 0, step.aggregate, checksum,
                        encodes=tuple(enc for _, enc in mine), hidden_scope=hidden_scope, codec_dir=codec_dir,
                        kv_merge=step.kv_merge, **bounds)
        inbox = tuple((e.src, variants[e.src].index(_variant_key(e, codecs))) for e in step.inputs)
        out.append(StepSubmission(call, step_transport(plan, step), inbox))
    return out


def submit_batch(steps: list, handles: dict, questions: list, batch: int, backend: str = "nccl") -> dict:
    """Submit every step of one batch (steps from compile_steps); returns
    {step id: [output refs..., stats ref]}."""
    from channels.transports import producer_method

    refs: dict = {}
    for sub in steps:
        call = replace(sub.call, batch=batch)
        inbox = [refs[src][variant] for src, variant in sub.inbox]
        handle = handles[call.agent]
        if sub.transport == "rdt":
            # the message stays in the producer until a receiver pulls it; stats come apart
            message = producer_method(handle, backend).remote(call, questions, *inbox)
            refs[call.step_id] = [message, handle.pop_stats.remote(batch, call.step_id)]
        else:
            n_out = len(call.outputs) + 1 if call.action != "text" else 2
            refs[call.step_id] = handle.run_step.options(num_returns=n_out).remote(call, questions, *inbox)
    return refs


def in_flight_limit(spec, plan) -> int | None:
    """run.max_in_flight as a number of batches (None: no limit). `auto` gives every actor
    a batch to work on plus one queued behind them, so pipelining keeps everyone busy while
    the object store holds the messages of a bounded number of batches."""
    value = spec.run.max_in_flight
    if value == "all":
        return None
    if value == "auto":
        from runtime.engine.actors import group_agents
        return len(group_agents(spec, plan.agents)) + 1
    return int(value)


def trace_rows(run_name: str, stats: dict, first_question: int) -> list:
    return [{"run": run_name, "batch": stats["batch"], "first_problem": first_question,
             "src": e["src"], "dst": stats["step"], "round": stats["round"], "kind": e["kind"],
             "bytes": e["bytes"], "latency_s": e["latency_s"]} for e in stats["inbox"]]


def prepare_run(spec, plan, address: str | None = None) -> None:
    """Everything checked before an actor starts (model refs, transports, codec parts), the
    Ray the actors start on, and that they fit in it."""
    from runtime.engine.ray_setup import ensure_ray

    check_model_refs(spec)
    check_transports(spec, plan)
    check_codec_parts(spec, plan)
    ensure_ray(address=address, num_cpus=needed_resources(spec, plan)["CPU"],
               object_store_bytes=spec.limits.object_store_bytes)
    check_fits(spec, plan)


def spec_steps(spec, plan) -> list:
    """compile_steps with what the spec says: its backend, codecs, hidden scope and limits."""
    return compile_steps(plan, spec.channels.rdt_backend, codec_for=lambda e: edge_codec(spec, plan, e),
                         hidden_scope=spec.channels.hidden_states, codec_dir=codec_dir(spec), limits=spec.limits)


def run_spec(spec, plan, questions: list, run_name: str | None = None, progress=None,
             on_batch=None, address: str | None = None, rejected: dict | None = None) -> RunResult:
    """Start actors, run every question through the plan, stop the actors. Every problem is
    answered once or reported failed with its reason (result.failed); the run goes on.
    progress: a runtime.engine.progress.Progress (or anything with update(problems, tokens));
    on_batch(BatchDone): called as each unit finishes (indices into `questions`), failures too;
    rejected: {index: reason} of questions already known to be bad (they are not run)."""
    from runtime.engine.metrics import RunMetrics
    from runtime.engine.question_checks import rejected_questions
    from runtime.engine.store_usage import StorePeak

    if not questions:
        raise RunError("no questions to run; give --question, --input FILE.jsonl, or run.inputs in the spec")
    prepare_run(spec, plan, address)
    run_name = run_name or f"{spec.name}-{uuid.uuid4().hex[:6]}"
    t0 = time.perf_counter()
    result = RunResult(run_name, list(questions), [None] * len(questions), [0] * len(questions))
    bad = rejected_questions(questions, spec.limits.max_question_chars, rejected)
    valid = [i for i in range(len(questions)) if i not in bad]
    metrics = RunMetrics(run_name)

    def report(done: BatchDone) -> None:
        n = len(done.indices)
        for i, answer, tokens in zip(done.indices, done.answers, done.tokens):
            result.answers[i], result.tokens[i] = answer, tokens
        result.failed.update(done.failed)
        result.steps.extend(done.step_stats)
        result.retries += done.retries * (n + len(done.failed))
        result.peak_in_flight = max(result.peak_in_flight, done.in_flight)
        if n:  # a unit of failures only has no steps to record
            result.units[done.batch] = list(done.indices)
            for s in done.step_stats:
                result.trace.extend(trace_rows(run_name, s, done.indices[0]))
            metrics.batch_done(done.step_stats, n)
        if on_batch:
            on_batch(done)
        if progress:
            progress.update(n + len(done.failed), sum(done.tokens))

    if bad:
        metrics.problems_failed(len(bad))
        report(BatchDone(-1, [], [], [], [], failed=bad))
    if not valid:
        result.wall_s = time.perf_counter() - t0
        return result
    handles = start_actors(spec, plan, run_name, ready=result.actor_info)
    result.actor_names = sorted({f"{run_name}/{spec.agents[a].actor or a}" for a in plan.agents})
    backend = spec.channels.rdt_backend
    result.max_in_flight = in_flight_limit(spec, plan)
    try:
        with open_groups(spec, plan, handles), StorePeak() as store:
            t_run = time.perf_counter()
            steps = spec_steps(spec, plan)
            if hasattr(progress, "start"):
                progress.start()
            for done in run_plan(plan, handles, [questions[i] for i in valid], spec.run.batch_size, backend,
                                 result.max_in_flight, steps, on_wait=store.sample_soon, metrics=metrics,
                                 limits=spec.limits):
                report(replace(done, indices=[valid[i] for i in done.indices],
                               failed={valid[i]: why for i, why in done.failed.items()}))
            result.run_s = time.perf_counter() - t_run
        result.peak_store_bytes, result.spilled_bytes = store.peak_bytes, store.spilled_bytes
    finally:
        kill_actors(handles.values())
    result.wall_s = time.perf_counter() - t0
    return result
