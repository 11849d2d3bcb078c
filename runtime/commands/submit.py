"""`latentray submit SPEC [run options] [--eval] [--address URL] [--wait]`: run a spec as a job
on a Ray cluster.

    latentray submit SPEC [run options] [--address URL] [--wait]
    latentray submit SPEC --eval --dataset NAME -o DIR [eval options] [--address URL] [--wait]

Everything after SPEC that is not a submit option is passed on unchanged to
`latentray run` (or `latentray eval` with --eval) on the cluster, after a local check
with the same parser and the same pre-flight stage. Paths inside the repository (the spec,
--input, --codecs, a --dataset file) are rewritten relative to its root, since the job
runs in a copy of it.
"""
from __future__ import annotations

import argparse
import sys

from latentray.runtime.jobs import client as jobs
from latentray.runtime.jobs.client import ADDRESS_HELP

PATH_OPTIONS = ("-i", "--input", "--codecs", "-d", "--dataset")


def _add_submit_flags(p) -> None:
    p.add_argument("--address", help=ADDRESS_HELP)
    p.add_argument("--wait", action="store_true",
                   help="stream the job's logs until it ends; exit 0 if it SUCCEEDED, 1 otherwise")
    p.add_argument("--eval", action="store_true", help="submit `latentray eval` instead of `latentray run`")
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                   help="leave these files out of the job's copy of the repository (gitignore syntax; repeatable)")


def add_parser(sub) -> None:
    p = sub.add_parser("submit", help="run a spec as a job on a Ray cluster", allow_abbrev=False,
                       usage="latentray submit SPEC [run or eval options] [--eval] [--address URL] [--wait]",
                       description="Submit `latentray run SPEC ...` (or `eval` with --eval) as a Ray job. "
                                   "Options not listed here are passed on to run/eval unchanged.")
    p.add_argument("spec", help="YAML graph spec")
    p.add_argument("forward", nargs=argparse.REMAINDER, metavar="...",
                   help="options of `latentray run` (-q, -i, -o, --method, --batch-size, --name, --codecs, ...) "
                        "or, with --eval, of `latentray eval` (--dataset, -o, --limit, --methods, ...)")
    _add_submit_flags(p)


def split_submit_args(args) -> tuple:
    """(submit options, the arguments to pass on) from the parsed `submit` namespace."""
    own = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    _add_submit_flags(own)
    later, forward = own.parse_known_args(args.forward)
    options = argparse.Namespace(address=later.address or args.address, wait=args.wait or later.wait,
                                 eval=args.eval or later.eval, exclude=[*args.exclude, *later.exclude])
    return options, forward


def _rewrite_paths(spec: str, forward: list, excludes=()) -> tuple:
    """The spec and forwarded arguments with repository paths made relative to its root;
    notes for paths the job will read outside its copy of the repository."""
    from pathlib import Path

    notes = []

    def fix(value: str, must_exist: bool) -> str:
        if must_exist and not Path(value).expanduser().exists():
            return value  # e.g. a built-in data set name
        new, where = jobs.repo_path(value, excludes)
        if where != "copy":
            why = "is outside the repository" if where == "outside" else \
                "is left out of the job's copy of the repository (.gitignore or excludes)"
            notes.append(f"{value} {why}: the job reads {new} on the cluster's node")
        return new

    out, i = [], 0
    while i < len(forward):
        tok = forward[i]
        name, eq, val = tok.partition("=")
        if tok in PATH_OPTIONS and i + 1 < len(forward):
            out += [tok, fix(forward[i + 1], tok in ("-d", "--dataset"))]
            i += 2
            continue
        if eq and name in PATH_OPTIONS:
            tok = f"{name}={fix(val, name == '--dataset')}"
        out.append(tok)
        i += 1
    return fix(spec, False), out, notes


def _output_note(parsed) -> list:
    from pathlib import Path

    output = getattr(parsed, "output", None)
    if output and not Path(output).is_absolute():
        return [f"--output {output} is relative: the job writes it inside its temporary copy of the repository; "
                "give an absolute path on the cluster to keep the results"]
    return []


def run(args) -> int:
    from latentray.runtime.commands import eval as eval_command
    from latentray.runtime.commands import run as run_command
    from latentray.runtime.commands.spec_options import load_spec_and_plan
    from latentray.runtime.engine.preflight import preflight

    options, forward = split_submit_args(args)
    command = "eval" if options.eval else "run"
    spec, forward, notes = _rewrite_paths(args.spec, forward, options.exclude)
    checker = argparse.ArgumentParser(prog="latentray", allow_abbrev=False)
    (eval_command if options.eval else run_command).add_parser(checker.add_subparsers(dest="command"))
    parsed = checker.parse_args([command, args.spec, *forward])  # the run/eval parser checks them here
    address = jobs.resolve_address(options.address)
    preflight(*load_spec_and_plan(parsed), address)  # what the job would refuse, refused before the upload
    for note in notes + _output_note(parsed):
        print(f"note: {note}", file=sys.stderr)
    c = jobs.client(address)
    job_id = jobs.submit(address, [spec, *forward], command=command, excludes=options.exclude, conn=c)
    print(f"submitted job {job_id} to {address}\n"
          f"  follow its logs: latentray logs {job_id} --follow --address {address}\n"
          f"  its status:      latentray status {job_id} --address {address}\n"
          f"  stop it:         latentray stop {job_id} --address {address}\n"
          f"  dashboard:       {address} (Jobs tab)", file=sys.stderr, flush=True)
    if not options.wait:
        print(job_id)
        return 0
    try:
        jobs.logs(address, job_id, follow=True, conn=c)
        state = jobs.wait_until_done(address, job_id, timeout_s=60, conn=c)
    except KeyboardInterrupt:
        print(f"stopped following; job {job_id} keeps running (latentray stop {job_id} --address {address})",
              file=sys.stderr)
        return 130
    print(f"job {job_id} {state}", file=sys.stderr)
    return 0 if state == "SUCCEEDED" else 1


