"""What every command that reads a spec shares: loading it, applying the command line's
overrides, and building its plan, in one place."""
from __future__ import annotations

import argparse
from pathlib import Path

from latentray.topologies.errors import SpecError


def in_flight(text: str):
    """--max-in-flight: N >= 1, auto or all."""
    if text in ("auto", "all"):
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of batches >= 1, auto or all")
    return value


def replica_count(text: str):
    """--replicas: N >= 1 or auto."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 1024:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of replicas from 1 to 1024, or auto")
    return value


def add_verbose(p) -> None:
    p.add_argument("--verbose", action="store_true", help="show Ray's own start-up lines and the actors' logs")


def with_overrides(spec, args, codecs: str | None = None):
    """The spec with what a command's options override (the options it has, of --method,
    --batch-size, --max-in-flight, --replicas and --codecs; `codecs` names the parts
    directory instead)."""
    from latentray.topologies.loader import with_codec_dir
    from latentray.topologies.validate import validate_spec

    batch_size = getattr(args, "batch_size", None)
    if batch_size is not None and batch_size < 1:
        raise SpecError("must be >= 1", file="--batch-size", fix="give a positive batch size")
    run = spec.run.model_copy(update={k: v for k, v in {
        "method": getattr(args, "method", None), "batch_size": batch_size,
        "max_in_flight": getattr(args, "max_in_flight", None),
        "replicas": getattr(args, "replicas", None)}.items() if v is not None})
    spec = spec.model_copy(update={"run": run})
    if getattr(args, "replicas", None) is not None:
        validate_spec(spec, "--replicas")  # agents sharing an actor must still agree
    return with_codec_dir(spec, Path("."), codecs or getattr(args, "codecs", None))


def load_spec_and_plan(args, method: str | None = None, codecs: str | None = None) -> tuple:
    """(spec, plan) of args.spec with the command's overrides (and `method` forced, and the
    codec parts directory `codecs`, if given)."""
    from latentray.topologies import build_plan, load_spec

    spec = with_overrides(load_spec(args.spec), args, codecs)
    if method is not None and spec.run.method != method:
        spec = spec.model_copy(update={"run": spec.run.model_copy(update={"method": method})})
    return spec, build_plan(spec, args.spec)


def codec_list(text: str | None):
    """--codec a,b,c as a list (None when not given)."""
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


def load_for_parts(args) -> tuple:
    """(spec, plan, directory) for a command that writes codec parts: --out, or the spec's
    channels.codecs; SpecError naming both when neither is given."""
    spec, plan = load_spec_and_plan(args, method="latent", codecs=args.out)
    if not spec.channels.codecs:
        raise SpecError("no directory to write to", file=args.spec, field="channels.codecs",
                        fix="pass --out DIR or set channels.codecs in the spec")
    return spec, plan, spec.channels.codecs
