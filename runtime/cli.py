"""The `latentray` command: run, validate and draw graph specs; evaluate; fit and measure codecs;
submit runs as jobs to a Ray cluster and follow them.

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
    run.add_argument("--output", "-o", help="directory for answers/ and trace/ (Parquet, written as batches "
                     "finish), answers.jsonl, summary.json; rerun with the same directory to resume")
    run.add_argument("--method", choices=["latent", "text", "single"], help="override run.method")
    run.add_argument("--batch-size", type=int, help="override run.batch_size")
    run.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or a local Ray)")
    run.add_argument("--name", help="run name; actors are named <name>/<agent>")
    run.add_argument("--codecs", help="directory of fitted codec parts (overrides channels.codecs)")
    run.add_argument("--max-in-flight", type=_in_flight, help="batches submitted ahead: N, auto or all "
                     "(overrides run.max_in_flight)")
    run.add_argument("--quiet", action="store_true", help="no progress bar or progress lines")
    run.add_argument("--restart", action="store_true", help="discard the results already in --output and "
                     "run every question again (default: resume)")
    val = sub.add_parser("validate", help="check a spec and print its plan")
    val.add_argument("spec")
    graph = sub.add_parser("graph", help="draw a spec's topology")
    graph.add_argument("spec")
    graph.add_argument("-o", "--output", required=True, help="FILE.png or FILE.svg")
    from runtime.commands.codec import add_codec_parsers
    from runtime.commands.eval import add_eval_parser

    from runtime.commands.jobs import add_job_parsers
    from runtime.commands.gateway import add_gateway_parsers

    add_eval_parser(sub)
    add_codec_parsers(sub)
    add_job_parsers(sub)
    add_gateway_parsers(sub)
    report = sub.add_parser("report", help="redraw an evaluation's table and plots")
    report.add_argument("dir", help="the --output directory of `latentray eval`")
    report.add_argument("--no-plots", action="store_true", help="print the table only")
    return p


def _in_flight(text: str):
    if text in ("auto", "all"):
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of batches >= 1, auto or all")
    return value


def with_overrides(spec, args):
    """The spec with what a command's options override (the options it has, of --method,
    --batch-size, --max-in-flight and --codecs)."""
    from topologies.loader import with_codec_dir

    batch_size = getattr(args, "batch_size", None)
    if batch_size is not None and batch_size < 1:
        raise SpecError("must be >= 1", file="--batch-size", fix="give a positive batch size")
    run = spec.run.model_copy(update={k: v for k, v in {
        "method": getattr(args, "method", None), "batch_size": batch_size,
        "max_in_flight": getattr(args, "max_in_flight", None)}.items() if v is not None})
    return with_codec_dir(spec.model_copy(update={"run": run}), Path("."), getattr(args, "codecs", None))


def cmd_run(args) -> int:
    from runtime.commands.run import run_command
    return run_command(args, with_overrides)


def cmd_validate(args) -> int:
    from runtime.commands.validate import validate_command
    return validate_command(args.spec)


def cmd_graph(args) -> int:
    from runtime.commands.graph import graph_command
    return graph_command(args.spec, args.output)


def cmd_eval(args) -> int:
    from runtime.commands.eval import cmd_eval as run_eval
    return run_eval(args)


def cmd_report(args) -> int:
    from runtime.eval.report import cmd_report as report
    return report(args)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from runtime.commands.codec import cmd_codec_eval, cmd_fit_codec
    from runtime.commands.jobs import cmd_logs, cmd_status, cmd_stop, cmd_submit
    from runtime.commands.gateway import cmd_ask, cmd_serve

    handler = {"run": cmd_run, "validate": cmd_validate, "graph": cmd_graph, "eval": cmd_eval,
               "report": cmd_report, "fit-codec": cmd_fit_codec, "codec-eval": cmd_codec_eval,
               "submit": cmd_submit, "status": cmd_status, "logs": cmd_logs, "stop": cmd_stop,
               "serve": cmd_serve, "ask": cmd_ask}[args.command]
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
