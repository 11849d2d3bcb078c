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
from collections import Counter
from dataclasses import dataclass, field, replace

from agents.step_call import InputEdge, StepCall

from .codec_plan import check_codec_parts, codec_dir, edge_codec
from .actors import check_fits, check_model_refs, kill_actors, needed_resources, start_actors
from .errors import RunError
from .transports import check_transports, open_groups, step_transport


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
            "problems_retried": self.retries,
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
                  hidden_scope: str = "latent", codec_dir: str = "") -> list:
    """Everything about each step's actor call that depends on the plan alone, once per run.
    codec_for(edge) -> EdgeCodec (runtime/codec_plan.py); None: no codec is applied."""
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
                        kv_merge=step.kv_merge)
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


def _answer(plan, texts: list) -> str:
    if plan.answer_mode == "majority":
        counts = Counter(t.strip() for t in texts)
        best = max(counts.values())
        return next(t for t in texts if counts[t.strip()] == best)
    return texts[0]


def in_flight_limit(spec, plan) -> int | None:
    """run.max_in_flight as a number of batches (None: no limit). `auto` gives every actor
    a batch to work on plus one queued behind them, so pipelining keeps everyone busy while
    the object store holds the messages of a bounded number of batches."""
    value = spec.run.max_in_flight
    if value == "all":
        return None
    if value == "auto":
        from .actors import group_agents
        return len(group_agents(spec, plan.agents)) + 1
    return int(value)


@dataclass
class BatchDone:
    batch: int
    first: int  # index of its first question in the run's question list
    answers: list
    tokens: list  # decoded tokens per question
    step_stats: list
    retries: int = 0  # times the batch was resubmitted after an actor died under it
    in_flight: int = 0  # batches submitted and unfinished when it finished, itself included


# An actor that died (and restarted) or an object lost with its node: the batch's steps are
# pure functions of their inputs, so resubmitting the whole batch is safe.
BATCH_RETRIES = 2


def fault_errors() -> tuple:
    """Errors of an actor dying or an object lost with its node (not of a step's own code)."""
    import ray

    return ray.exceptions.RayActorError, ray.exceptions.ObjectLostError


def run_plan(plan, handles: dict, questions: list, batch_size: int, backend="nccl",
             max_in_flight: int | None = None, steps: list | None = None, on_wait=None, metrics=None):
    """Run every batch; yields a BatchDone per batch as it finishes (in finishing order).
    At most `max_in_flight` batches are submitted and unfinished at once (None: all), so
    the object store holds the messages of that many batches whatever the problem count.
    on_wait(): called each time the driver wakes from ray.wait (a sampler's hook)."""
    import ray

    batches = [questions[i:i + batch_size] for i in range(0, len(questions), batch_size)]
    steps = steps if steps is not None else compile_steps(plan, backend)
    pending: dict = {}
    attempts: dict = {}
    queue = iter(enumerate(batches))

    def submit(b: int) -> None:
        refs = submit_batch(steps, handles, batches[b], b, backend)
        stats_refs = [r[-1] for r in refs.values()]
        pending[stats_refs[-1]] = (b, refs, stats_refs)

    def submit_next() -> None:
        for b, _ in queue:
            submit(b)
            if max_in_flight is not None and len(pending) >= max_in_flight:
                return

    submit_next()
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        if on_wait:
            on_wait()
        in_flight = len(pending)
        b, refs, stats_refs = pending.pop(done[0])
        try:
            step_stats = ray.get(stats_refs)
            per_step = [ray.get(refs[sid][0]) for sid in plan.answer_steps]
        except Exception as exc:
            if isinstance(exc, fault_errors()) and attempts.get(b, 0) < BATCH_RETRIES:
                attempts[b] = attempts.get(b, 0) + 1
                if metrics:
                    metrics.problems_retried(len(batches[b]))
                del refs
                submit(b)
                continue
            if metrics:
                metrics.problems_failed(len(batches[b]))
            raise
        answers = [_answer(plan, [p["texts"][r] for p in per_step]) for r in range(len(batches[b]))]
        tokens = [sum(s["tokens"][r] for s in step_stats) for r in range(len(batches[b]))]
        del refs  # drop every ObjectRef of this batch so its messages are freed
        submit_next()
        yield BatchDone(b, b * batch_size, answers, tokens, step_stats, attempts.get(b, 0), in_flight)


def trace_rows(run_name: str, stats: dict, first_question: int) -> list:
    return [{"run": run_name, "batch": stats["batch"], "first_problem": first_question,
             "src": e["src"], "dst": stats["step"], "round": stats["round"], "kind": e["kind"],
             "bytes": e["bytes"], "latency_s": e["latency_s"]} for e in stats["inbox"]]


def run_spec(spec, plan, questions: list, run_name: str | None = None, progress=None,
             on_batch=None, address: str | None = None) -> RunResult:
    """Start actors, run every question through the plan, stop the actors.
    progress: a runtime.progress.Progress (or anything with update(problems, tokens));
    on_batch(BatchDone): called as each batch finishes, before the next is reported."""
    import ray

    from .metrics import RunMetrics
    from .ray_setup import ensure_ray
    from .store_usage import StorePeak

    if not questions:
        raise RunError("no questions to run; give --question, --input FILE.jsonl, or run.inputs in the spec")
    check_model_refs(spec)
    check_transports(spec, plan)
    check_codec_parts(spec, plan)
    ensure_ray(address=address, num_cpus=needed_resources(spec, plan)["CPU"])
    check_fits(spec, plan)
    run_name = run_name or f"{spec.name}-{uuid.uuid4().hex[:6]}"
    t0 = time.perf_counter()
    result = RunResult(run_name, list(questions), [None] * len(questions), [0] * len(questions))
    handles = start_actors(spec, plan, run_name, ready=result.actor_info)
    result.actor_names = sorted({f"{run_name}/{spec.agents[a].actor or a}" for a in plan.agents})
    backend = spec.channels.rdt_backend
    metrics = RunMetrics(run_name)
    result.max_in_flight = in_flight_limit(spec, plan)
    try:
        with open_groups(spec, plan, handles), StorePeak() as store:
            t_run = time.perf_counter()
            steps = compile_steps(plan, backend, codec_for=lambda e: edge_codec(spec, plan, e),
                                  hidden_scope=spec.channels.hidden_states, codec_dir=codec_dir(spec))
            if hasattr(progress, "start"):
                progress.start()
            for done in run_plan(plan, handles, questions, spec.run.batch_size, backend, result.max_in_flight,
                                 steps, on_wait=store.sample, metrics=metrics):
                n = len(done.answers)
                result.answers[done.first:done.first + n] = done.answers
                result.tokens[done.first:done.first + n] = done.tokens
                result.steps.extend(done.step_stats)
                result.retries += done.retries * n
                result.peak_in_flight = max(result.peak_in_flight, done.in_flight)
                for s in done.step_stats:
                    result.trace.extend(trace_rows(run_name, s, done.first))
                metrics.batch_done(done.step_stats, n)
                if on_batch:
                    on_batch(done)
                if progress:
                    progress.update(n, sum(done.tokens))
            result.run_s = time.perf_counter() - t_run
        result.peak_store_bytes, result.spilled_bytes = store.peak_bytes, store.spilled_bytes
    except ray.exceptions.RayTaskError as exc:
        raise RunError(f"a step failed: {exc.cause if getattr(exc, 'cause', None) else exc}") from None
    except fault_errors() as exc:
        raise RunError(f"an agent's actor died and the batch's {BATCH_RETRIES} retries ran out: "
                       f"{str(exc).strip().splitlines()[0]}") from None
    finally:
        kill_actors(handles.values())
    result.wall_s = time.perf_counter() - t0
    return result
