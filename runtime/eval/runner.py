"""Run one spec as several methods (latent, text, single) over the same problems through
the same engine, and turn each run into one row per problem: the answer, its score, and
what it cost (tokens per agent, prompt tokens, latent steps, seconds, message bytes).

Costs that belong to a whole batch (an agent's compute time, a message's bytes) are
shared equally among the batch's problems; tokens are counted per problem.
"""
from __future__ import annotations

import uuid
from collections import defaultdict

from latentray.runtime.eval.checkers import checker_for
from latentray.runtime.eval.prompts import format_question

METHODS = ("latent", "text", "single")


def with_method(spec, method: str, batch_size: int | None = None, max_new_tokens: int | None = None):
    run = spec.run.model_copy(update={"method": method, **({"batch_size": batch_size} if batch_size else {})})
    agents = spec.agents
    if max_new_tokens:
        agents = {k: a.model_copy(update={"max_new_tokens": max_new_tokens}) for k, a in agents.items()}
    return spec.model_copy(update={"run": run, "agents": agents})


def problem_inputs(problems: list) -> list:
    """What the agents read per problem: the formatted question and the private context."""
    return [{"question": format_question(p), "context": p.context} if p.context else format_question(p)
            for p in problems]


def result_rows(result) -> tuple:
    """(answers, steps, trace) rows of an in-memory run, in the shape runtime/engine/results.py
    stores them."""
    answers = [{"index": i, "answer": result.answers[i], "run": result.run_name, "batch": batch}
               for batch, rows in result.units.items() for i in rows]
    steps = [{**s, "run": result.run_name, "problems": result.units[s["batch"]]} for s in result.steps]
    trace = [{**r, "run": result.run_name, "problems": result.units[r["batch"]]} for r in result.trace]
    return answers, steps, trace


def _batch_costs(steps: list, trace: list) -> dict:
    """{(run, batch): {"seconds": {agent: s}, "latent_steps": n, "bytes": b, "rows": r}}."""
    out: dict = defaultdict(lambda: {"seconds": defaultdict(float), "latent_steps": 0, "bytes": 0, "rows": 0})
    for s in steps:
        c = out[(s["run"], s["batch"])]
        c["seconds"][s["agent"]] += s.get("compute_s") or 0.0
        c["latent_steps"] += s.get("latent_steps") or 0
        c["rows"] = len(s["problems"])
    for r in trace:
        out[(r["run"], r["batch"])]["bytes"] += r["bytes"]
    return out


def _per_problem_tokens(steps: list) -> tuple:
    """({problem index: {agent: decoded tokens}}, {problem index: prompt tokens})."""
    decoded: dict = defaultdict(lambda: defaultdict(int))
    prompt: dict = defaultdict(int)
    for s in steps:
        prompts = s.get("prompt_tokens") or [0] * len(s["problems"])
        for r, i in enumerate(s["problems"]):
            decoded[i][s["agent"]] += s["tokens"][r]
            prompt[i] += prompts[r]
    return decoded, prompt


def _cut_off(steps: list, answer_limits: dict) -> set:
    """Indices of the problems whose answer stopped at its step's token limit:
    answer_limits {answer step id: max_new_tokens}."""
    out = set()
    for s in steps:
        limit = answer_limits.get(s["step"])
        if limit:
            out.update(i for r, i in enumerate(s["problems"]) if s["tokens"][r] >= limit)
    return out


def answer_limits(spec, plan) -> dict:
    """{answer step id: its agent's max_new_tokens}."""
    return {sid: spec.agents[plan.step(sid).agent].max_new_tokens for sid in plan.answer_steps}


def options(problem) -> int:
    """How many options a multiple-choice problem offers (0 for other tasks): its chance is 1 / that."""
    return len(problem.choices) if problem.task == "choice" else 0


def _failed_row(p, method: str, dataset: str, spec_name: str, reason: str) -> dict:
    """A problem that failed scores as wrong, so a failure can never raise an accuracy."""
    return {"dataset": dataset, "spec": spec_name, "method": method, "id": p.id, "task": p.task,
            "question": p.question, "context": p.context, "gold": p.gold, "answer": None, "extracted": None,
            "correct": False, "detail": "failed", "prompt_tokens": 0, "decoded_tokens": 0, "tokens_by_agent": {},
            "latent_steps": 0, "seconds": 0.0, "seconds_by_agent": {}, "message_bytes": 0, "batch": -1,
            "options": options(p), "cut_off": False, "error": reason}


def method_rows(answers: list, steps: list, trace: list, problems: list, method: str, dataset: str,
                spec_name: str, failed: dict | None = None, limits: dict | None = None) -> list:
    """One scored row per problem run. answers/steps/trace: rows as runtime/results.py
    stores them (or result_rows makes them): answers carry the problem index, steps and
    trace the batch's problem indices; failed: {problem index: reason}, scored wrong;
    limits: answer_limits(), so a checker knows which answers were cut off."""
    costs = _batch_costs(steps, trace)
    decoded, prompt = _per_problem_tokens(steps)
    cut = _cut_off(steps, limits or {})
    rows = []
    for a in sorted(answers, key=lambda r: r["index"]):
        i, p = a["index"], problems[a["index"]]
        c = costs[(a["run"], a["batch"])]
        share = 1.0 / max(c["rows"], 1)
        check = checker_for(p.task, p.meta.get("checker")).check(a["answer"], p, cut_off=i in cut)
        seconds = {ag: sec * share for ag, sec in c["seconds"].items()}
        rows.append({
            "dataset": dataset, "spec": spec_name, "method": method, "id": p.id, "task": p.task,
            "question": p.question, "context": p.context, "gold": p.gold, "answer": a["answer"],
            "extracted": check.extracted, "correct": bool(check.correct), "detail": check.detail,
            "prompt_tokens": int(prompt[i]), "decoded_tokens": int(sum(decoded[i].values())),
            "tokens_by_agent": {ag: int(n) for ag, n in decoded[i].items()},
            "latent_steps": int(c["latent_steps"]), "seconds": float(sum(seconds.values())),
            "seconds_by_agent": seconds, "message_bytes": int(round(c["bytes"] * share)),
            "batch": int(a["batch"]), "options": options(p), "cut_off": i in cut, "error": None,
        })
    order = [a["index"] for a in sorted(answers, key=lambda r: r["index"])]
    for i, why in (failed or {}).items():
        rows.append(_failed_row(problems[i], method, dataset, spec_name, why))
        order.append(i)
    return [row for _, row in sorted(zip(order, rows), key=lambda x: x[0])]


def run_method(spec, problems: list, method: str, *, dataset: str, batch_size: int | None = None,
               max_new_tokens: int | None = None, address: str | None = None, progress=None,
               output_dir=None, restart: bool = False) -> tuple:
    """(rows, run summary) of one method over the problems. With output_dir, answers stream
    into output_dir (runtime/results.py) as batches finish, and a rerun resumes there
    (restart: discards what is there and runs every problem again)."""
    from latentray.runtime.engine.run import run_spec
    from latentray.runtime.engine.results import RunOutput
    from latentray.topologies import build_plan

    spec_m = with_method(spec, method, batch_size, max_new_tokens)
    plan = build_plan(spec_m)
    inputs = problem_inputs(problems)
    output = RunOutput(output_dir, spec_m, inputs, [p.id for p in problems]).open(restart) if output_dir else None
    try:
        todo = output.todo() if output else list(range(len(problems)))
        # unique per session: a resumed evaluation's batches are numbered from 0 again, and
        # per-problem costs are shared out per (run, batch)
        run_name = f"{spec.name}-eval-{method}-{uuid.uuid4().hex[:8]}"
        summary = {"method": method, "problems": len(problems), "problems_run": len(todo), "run_s": 0.0,
                   "wall_s": 0.0, "batch_size": spec_m.run.batch_size, "agents": list(plan.agents),
                   "model_loads": [], "resumed_finished": len(problems) - len(todo)}
        if progress is not None:
            progress.resume_from(len(problems) - len(todo))
        result = None
        if todo:
            def on_batch(done):
                if output:
                    output.write_done(done, run_name)

            result = run_spec(spec_m, plan, inputs, run_name=run_name, progress=progress, on_batch=on_batch,
                              address=address, todo=todo)
            summary.update(run_s=result.run_s, wall_s=result.wall_s,
                           model_loads=result.summary(spec_m, plan)["model_loads"])
        if output:
            stored, failed = (output.answers(), output.steps(), output.trace()), output.failures()
        else:
            stored, failed = result_rows(result), dict(result.failed)
    finally:
        if output:
            output.close()
    summary["problems_failed"] = len(failed)
    return method_rows(*stored, problems, method, dataset, spec.name, failed, answer_limits(spec_m, plan)), summary
