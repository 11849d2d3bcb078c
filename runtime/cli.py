"""The `latentray` command: run, validate and draw graph specs; evaluate; fit and measure codecs.

Errors a user can cause print one line on stderr and exit 2; no traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agents.errors import LatentrayError
from channels.errors import CodecError, MessageError
from topologies.errors import SpecError

USER_ERRORS = (LatentrayError, SpecError, MessageError, CodecError)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="latentray", description="Latent multi-agent graphs on Ray")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run questions through a graph spec")
    run.add_argument("spec", help="YAML graph spec")
    run.add_argument("--question", "-q", action="append", default=[], help="a question (repeatable)")
    run.add_argument("--input", "-i", help="JSONL file, one {\"question\": ...} per line")
    run.add_argument("--output", "-o", help="directory for answers.jsonl, summary.json, trace.parquet")
    run.add_argument("--method", choices=["latent", "text", "single"], help="override run.method")
    run.add_argument("--batch-size", type=int, help="override run.batch_size")
    run.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or a local Ray)")
    run.add_argument("--name", help="run name; actors are named <name>/<agent>")
    run.add_argument("--codecs", help="directory of fitted codec parts (overrides channels.codecs)")
    val = sub.add_parser("validate", help="check a spec and print its plan")
    val.add_argument("spec")
    graph = sub.add_parser("graph", help="draw a spec's topology")
    graph.add_argument("spec")
    graph.add_argument("-o", "--output", required=True, help="FILE.png or FILE.svg")
    from runtime.codec_command import add_codec_parsers
    from runtime.eval.command import add_eval_parser

    add_eval_parser(sub)
    add_codec_parsers(sub)
    report = sub.add_parser("report", help="redraw an evaluation's table and plots")
    report.add_argument("dir", help="the --output directory of `latentray eval`")
    report.add_argument("--no-plots", action="store_true", help="print the table only")
    return p


def _with_overrides(spec, args):
    from topologies.loader import with_codec_dir

    run = spec.run.model_copy(update={k: v for k, v in {
        "method": args.method, "batch_size": args.batch_size}.items() if v is not None})
    return with_codec_dir(spec.model_copy(update={"run": run}), Path("."), getattr(args, "codecs", None))


def cmd_run(args) -> int:
    from runtime.questions import read_jsonl_questions
    from topologies import build_plan, load_spec

    spec = load_spec(args.spec)
    if args.batch_size is not None and args.batch_size < 1:
        raise SpecError("must be >= 1", file="--batch-size", fix="give a positive batch size")
    spec = _with_overrides(spec, args)
    plan = build_plan(spec, args.spec)
    questions, ids = list(args.question), None
    source = args.input or (None if questions else spec.run.inputs)
    if source:
        if spec.run.inputs and not args.input:
            source = str((Path(args.spec).parent / source).resolve())
        file_q, ids = read_jsonl_questions(source)
        ids = list(range(len(questions))) + ids if questions else ids
        questions += file_q
    from runtime.engine import run_spec
    from runtime.results import write_answers, write_summary, write_trace

    def progress(batch, total):
        print(f"[latentray] batch {batch + 1}/{total} done", file=sys.stderr, flush=True)

    result = run_spec(spec, plan, questions, run_name=args.name, progress=progress, address=args.address)
    for i, (q, a) in enumerate(zip(result.questions, result.answers)):
        print(f"[{ids[i] if ids else i}] Q: {q}\n    A: {a!r}")
    summary = result.summary(spec, plan)
    out_dir = args.output or spec.run.output
    if out_dir:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_answers(out, result.questions, result.answers, result.tokens, ids)
        write_trace(out, result.trace)
        write_summary(out, summary)
        print(f"wrote {out}/answers.jsonl, summary.json, trace.parquet")
    for load in summary["model_loads"]:
        how = {"converted": f"converted from GGUF in {load['convert_s']:.1f} s", "cache": "from the cache",
               "built": "built in code", "pretrained": "from_pretrained"}[load["how"]]
        print(f"model {load['ref']} in {load['actor']}: {load['load_s']:.1f} s ({how})", file=sys.stderr)
    steps = ", ".join(f"{a}={n}" for a, n in summary["latent_steps"].items())
    print(f"summary: {summary['questions']} questions, agents {', '.join(summary['agents'])}; "
          f"latent steps {steps}; tokens decoded {summary['tokens_decoded']}; "
          f"{summary['messages']} messages, {summary['message_bytes'] / 2**20:.2f} MiB; "
          f"wall {summary['wall_s']:.2f} s ({summary['run_s']:.2f} s after the models loaded)")
    return 0


def cmd_validate(args) -> int:
    from runtime.validate_command import validate_command
    return validate_command(args.spec)


def cmd_graph(args) -> int:
    from runtime.graph_command import graph_command
    return graph_command(args.spec, args.output)


def cmd_eval(args) -> int:
    from runtime.eval.command import cmd_eval as run_eval
    return run_eval(args)


def cmd_report(args) -> int:
    from runtime.eval.report import cmd_report as report
    return report(args)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from runtime.codec_command import cmd_codec_eval, cmd_fit_codec

    handler = {"run": cmd_run, "validate": cmd_validate, "graph": cmd_graph, "eval": cmd_eval,
               "report": cmd_report, "fit-codec": cmd_fit_codec, "codec-eval": cmd_codec_eval}[args.command]
    try:
        return handler(args)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
