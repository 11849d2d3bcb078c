"""`latentray validate SPEC`: check a spec before anything runs and print its plan as a
table, then run the same pre-flight stage `run` runs (models, transports, codec parts,
limits, resources) and list everything it would refuse.

Exit 0 with the table on stdout; exit 2 with the one-line error (file, field, fix) on
stderr when the spec does not load, or with the table and one line per pre-flight
problem when `run` would refuse it.
"""
from __future__ import annotations

import sys

from latentray.channels.kinds import MEMORY, get_kind
from latentray.topologies.errors import SpecError
from latentray.topologies.loader import load_plan

COLUMNS = ("step", "agent", "action", "round", "emits", "inputs (src:kind)")


def plan_rows(plan) -> list:
    rows = []
    for s in plan.steps:
        action = f"aggregate:{s.aggregate}" if s.action == "aggregate" else s.action
        memory = s.action != "text" and get_kind(s.emit).role == MEMORY  # a memory is sent whole or in part
        emits = "answer" if s.action == "text" else s.emit + (f" ({s.kv_scope})" if memory else "")
        inputs = ", ".join(f"{e.src}:{e.kind}" + (f"/{e.codec}" if e.codec != "identity" else "")
                           for e in s.inputs) or "-"
        rows.append((s.id, s.agent, action, str(s.round), emits, inputs))
    return rows


def format_table(rows: list) -> str:
    widths = [max(len(str(r[i])) for r in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(COLUMNS), line(["-" * w for w in widths]), *map(line, rows)])


def plan_summary(spec, plan) -> str:
    per_round = ", ".join(f"r{r}: {n}" for r, n in sorted(plan.messages_per_round().items())) or "none"
    answer = ", ".join(plan.answer_steps) + (" (majority vote)" if plan.answer_mode == "majority" else "")
    return (f"{spec.name}: {plan.topology} topology, {len(plan.agents)} agents, {len(plan.steps)} steps, "
            f"{plan.rounds} rounds, method {spec.run.method}\n"
            f"messages per problem batch: {len(plan.edges)} ({per_round}); answer: {answer}")


def codec_status(spec, plan) -> str | None:
    """One line on the fitted codecs the plan needs, when they are ready (None if it needs none
    or they are not: pre-flight reports that)."""
    from latentray.channels.errors import CodecError
    from latentray.runtime.codecs.plan import check_codec_parts, required_fits

    fits = required_fits(spec, plan)
    if not fits:
        return None
    try:
        check_codec_parts(spec, plan)
    except CodecError:
        return None
    return f"codecs: fitted ({', '.join(sorted(fits))} in {spec.channels.codecs})"


def add_parser(sub) -> None:
    p = sub.add_parser("validate", help="check a spec, print its plan and what a run would refuse")
    p.add_argument("spec")
    p.add_argument("--address", help="the Ray cluster the run would join (default: RAY_ADDRESS or a local Ray)")


def run(args) -> int:
    from latentray.runtime.engine.preflight import problems

    try:
        spec, plan = load_plan(args.spec)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(plan_summary(spec, plan))
    print(format_table(plan_rows(plan)))
    status = codec_status(spec, plan)
    if status:
        print(status)
    refused = problems(spec, plan, getattr(args, "address", None))
    for check, text in refused:
        print(f"NOT READY ({check}): {text}")
    if refused:
        print(f"error: `latentray run` would refuse this spec ({len(refused)} problem(s) above)", file=sys.stderr)
        return 2
    return 0
