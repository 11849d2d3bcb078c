"""`latentray eval SPEC --dataset NAME|FILE --output DIR`: run the spec as each method over
the data set, score every answer, write results/<method>.parquet, print the comparison."""
from __future__ import annotations

import sys
from pathlib import Path

from latentray.topologies.errors import SpecError

from latentray.runtime.commands.spec_options import add_verbose
from latentray.runtime.eval.datasets import load_problems, parse_field_mapping
from latentray.runtime.eval.report import print_report
from latentray.runtime.eval.results import write_method
from latentray.runtime.eval.runner import METHODS, run_method, with_method


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="score a spec as latent / text / single on a data set")
    p.add_argument("spec", help="YAML graph spec")
    p.add_argument("--dataset", "-d", required=True,
                   help="built-in set (gsm8k, arc-easy, arc-challenge, basic-arithmetic, humaneval, split-info, squad; "
                        "lm-eval-harness names such as arc_easy work too), "
                        "a .jsonl/.csv/.parquet/.arrow file, a folder saved with Hugging Face save_to_disk, "
                        "or hf:<id>[:config]")
    p.add_argument("--output", "-o", required=True, help="directory for results/<method>.parquet; answers "
                   "stream into runs/<method>/ as batches finish, and a rerun resumes there")
    p.add_argument("--limit", "-n", type=int, help="the first N problems")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated: latent,text,single")
    p.add_argument("--field", action="append", default=[], metavar="KEY=COLUMN",
                   help="field mapping for files: question=, answer=, choices=, id=, context=, labels=")
    p.add_argument("--task", choices=["math", "choice", "exact", "code"], help="task of a file's problems")
    p.add_argument("--split", help="data set split, where the source has several")
    p.add_argument("--batch-size", type=int, help="override run.batch_size")
    p.add_argument("--max-new-tokens", type=int, help="override every agent's max_new_tokens")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or a local Ray)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or progress lines")
    p.add_argument("--restart", action="store_true", help="discard the answers already in --output for these "
                   "methods and run every problem again (otherwise a rerun resumes there)")
    p.add_argument("--unsafe-code", action="store_true",
                   help="where this machine allows no sandbox (namespaces), run model-written code under "
                        "weaker guards anyway (resource limits only)")
    add_verbose(p)


def check_code_sandbox(problems: list, unsafe_code: bool) -> None:
    """Code problems run model-written code: refuse, before any model runs, where no jail
    can be built, unless --unsafe-code says to run it under the weaker guards."""
    from latentray.runtime.eval import sandbox
    from latentray.runtime.eval.checkers import checker_for

    if not any(checker_for(p.task, p.meta.get("checker")).name == "code" for p in problems):
        return
    if sandbox.jail_mode() is None:
        if not unsafe_code:
            raise sandbox.SandboxUnavailable(sandbox.unavailable_reason())
        sandbox.allow_unjailed()


def parse_methods(text: str) -> list:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise SpecError(f"unknown method(s) {', '.join(bad) or '(none)'}", file="--methods",
                        fix=f"use a comma-separated subset of {','.join(METHODS)}")
    return list(dict.fromkeys(methods))


def prepare_methods(spec, methods: list, args) -> None:
    """Pre-flight every method before the first runs, and start a local Ray sized for the
    largest of them: one sized for the first method alone would refuse a later, larger one."""
    from latentray.runtime.engine.preflight import needed_resources, preflight
    from latentray.runtime.engine.ray_setup import ensure_ray
    from latentray.topologies import build_plan

    cpus = 0.0
    for method in methods:
        spec_m = with_method(spec, method, args.batch_size, args.max_new_tokens)
        plan = build_plan(spec_m)
        preflight(spec_m, plan, args.address)
        cpus = max(cpus, needed_resources(spec_m, plan)["CPU"])
    ensure_ray(address=args.address, num_cpus=cpus, object_store_bytes=spec.limits.object_store_bytes,
               verbose=args.verbose)


def run(args, report: bool = True) -> int:
    """args as add_parser's; args.spec may also be a loaded spec (the Python API's
    latentray.evaluate). report: print the comparison table at the end."""
    from latentray.topologies import load_spec
    from latentray.topologies.spec import GraphSpec

    spec = args.spec if isinstance(args.spec, GraphSpec) else load_spec(args.spec)
    for flag, value in (("--batch-size", args.batch_size), ("--max-new-tokens", args.max_new_tokens)):
        if value is not None and value < 1:
            raise SpecError("must be >= 1", file=flag, fix="give a positive number")
    methods = parse_methods(args.methods)
    mapping = parse_field_mapping(args.field) if args.field else None
    problems = load_problems(args.dataset, limit=args.limit, mapping=mapping, task=args.task, split=args.split)
    out = Path(args.output)
    print(f"[eval] {len(problems)} problems from {args.dataset}; methods {', '.join(methods)}", file=sys.stderr)
    from latentray.runtime.engine.progress import Progress
    from latentray.runtime.engine.warm_actors import keep_warm

    check_code_sandbox(problems, args.unsafe_code)
    prepare_methods(spec, methods, args)

    # an actor one method starts is reused by the next where it is the same actor (the same
    # model and agent configs): no second model load (runtime/engine/warm_actors.py)
    with keep_warm():
        for method in methods:
            progress = Progress(len(problems), desc=f"eval {method}", quiet=args.quiet)
            try:
                rows, summary = run_method(spec, problems, method, dataset=args.dataset, batch_size=args.batch_size,
                                           max_new_tokens=args.max_new_tokens, address=args.address, progress=progress,
                                           output_dir=out / "runs" / method, restart=args.restart)
            finally:
                progress.close()
            summary.update(dataset=args.dataset, spec=spec.name if args.spec is spec else str(args.spec),
                           limit=args.limit)
            if not summary["problems_run"]:
                print(f"[eval] {method}: all {len(problems)} problems were already finished in {out}", file=sys.stderr)
            elif summary["resumed_finished"]:
                print(f"[eval] {method}: resuming {out}: {summary['resumed_finished']} of {len(problems)} problems "
                      f"were already finished; ran the other {summary['problems_run']}", file=sys.stderr)
            path = write_method(out, method, rows, summary, keep_summary=not summary["problems_run"])
            right = sum(r["correct"] for r in rows)
            print(f"[eval] {method}: {right}/{len(rows)} correct, {summary['run_s']:.1f} s; wrote {path}",
                  file=sys.stderr)
    if report:
        print_report(out, plots=False)
    return 0
