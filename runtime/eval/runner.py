"""Run one spec as several methods (latent, text, single) over the same problems through
the same engine, and turn each run into one row per problem: the answer, its score, and
what it cost (tokens per agent, prompt tokens, latent steps, seconds, message bytes).

Costs that belong to a whole batch (an agent's compute time, a message's bytes) are
shared equally among the batch's problems; tokens are counted per problem.
"""
from __future__ import annotations

from collections import defaultdict

from .checkers import checker_for
from .prompts import format_question

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


def batch_costs(result) -> dict:
    """{batch: {"seconds": {agent: s}, "latent_steps": n, "bytes": b, "rows": r}} from a run."""
    out: dict = defaultdict(lambda: {"seconds": defaultdict(float), "latent_steps": 0, "bytes": 0, "rows": 0})
    for s in result.steps:
        c = out[s["batch"]]
        c["seconds"][s["agent"]] += s.get("compute_s", 0.0)
        c["latent_steps"] += s.get("latent_steps", 0)
        c["rows"] = s["rows"]
    for r in result.trace:
        out[r["batch"]]["bytes"] += r["bytes"]
    return out


def per_problem_tokens(result, batch_size: int) -> tuple:
    """({problem index: {agent: decoded tokens}}, {problem index: prompt tokens})."""
    decoded: dict = defaultdict(lambda: defaultdict(int))
    prompt: dict = defaultdict(int)
    for s in result.steps:
        first = s["batch"] * batch_size
        for r in range(s["rows"]):
            decoded[first + r][s["agent"]] += s["tokens"][r]
            prompt[first + r] += s.get("prompt_tokens", [0] * s["rows"])[r]
    return decoded, prompt


def method_rows(result, problems: list, method: str, batch_size: int, dataset: str, spec_name: str) -> list:
    costs = batch_costs(result)
    decoded, prompt = per_problem_tokens(result, batch_size)
    rows = []
    for i, (p, answer) in enumerate(zip(problems, result.answers)):
        c = costs[i // batch_size]
        share = 1.0 / max(c["rows"], 1)
        check = checker_for(p.task, p.meta.get("checker")).check(answer, p)
        seconds = {a: s * share for a, s in c["seconds"].items()}
        rows.append({
            "dataset": dataset, "spec": spec_name, "method": method, "id": p.id, "task": p.task,
            "question": p.question, "context": p.context, "gold": p.gold, "answer": answer,
            "extracted": check.extracted, "correct": bool(check.correct), "detail": check.detail,
            "prompt_tokens": int(prompt[i]), "decoded_tokens": int(sum(decoded[i].values())),
            "tokens_by_agent": {a: int(n) for a, n in decoded[i].items()},
            "latent_steps": int(c["latent_steps"]), "seconds": float(sum(seconds.values())),
            "seconds_by_agent": seconds, "message_bytes": int(round(c["bytes"] * share)),
            "batch": i // batch_size,
        })
    return rows


def run_method(spec, problems: list, method: str, *, dataset: str, batch_size: int | None = None,
               max_new_tokens: int | None = None, address: str | None = None, progress=None) -> tuple:
    """(rows, run summary) of one method over the problems."""
    from runtime.engine import run_spec
    from topologies import build_plan

    spec_m = with_method(spec, method, batch_size, max_new_tokens)
    plan = build_plan(spec_m)
    result = run_spec(spec_m, plan, problem_inputs(problems), run_name=f"{spec.name}-eval-{method}",
                      progress=progress, address=address)
    rows = method_rows(result, problems, method, spec_m.run.batch_size, dataset, spec.name)
    summary = {"method": method, "problems": len(problems), "run_s": result.run_s, "wall_s": result.wall_s,
               "batch_size": spec_m.run.batch_size, "agents": list(plan.agents),
               "model_loads": result.summary(spec_m, plan)["model_loads"]}
    return rows, summary
