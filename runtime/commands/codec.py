"""`latentray fit-codec` and `latentray codec-eval`: the command-line side of codecs."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from topologies.errors import SpecError


def add_codec_parsers(sub) -> None:
    fit = sub.add_parser("fit-codec", help="fit the codec parts a spec's edges need")
    fit.add_argument("spec")
    fit.add_argument("--out", help="directory for the parts (default: the spec's channels.codecs)")
    fit.add_argument("--anchors", help="anchor text file, one anchor a line (default: the shipped set)")
    fit.add_argument("--codec", help="fit these codecs (comma-separated) for every hidden edge instead of each "
                                     "edge's own, e.g. to compare ridge,relative,hub")
    fit.add_argument("--hub-dim", type=int, help="hub space dimension (default 512, at most the reference's size)")
    fit.add_argument("--reference", help="hub reference model ref (default: the first sender's model)")
    fit.add_argument("--ridge-lambda", type=float, help="ridge penalty relative to the mean eigenvalue (1e-3)")
    fit.add_argument("--relative-k", type=int, help="anchor points of the relative codec (default 1024)")
    fit.add_argument("--distill-steps", type=int, default=0,
                     help="after the closed-form fit, train the hub's maps by distillation for N steps")
    fit.add_argument("--quiet", action="store_true", help="no progress bar")
    ev = sub.add_parser("codec-eval", help="measure fitted codecs on held-out anchor texts")
    ev.add_argument("spec")
    ev.add_argument("--codecs", help="directory of fitted parts (default: the spec's channels.codecs)")
    ev.add_argument("--anchors", help="anchor text file the codecs were fitted on (default: the shipped set)")
    ev.add_argument("--codec", help="evaluate these codecs (comma-separated) for every hidden edge")
    ev.add_argument("--limit", type=int, help="held-out texts to use (default: all)")
    ev.add_argument("--json", help="write the rows as JSON here")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")


def _load(spec_path: str, codecs: str | None):
    from topologies import build_plan, load_spec
    from topologies.loader import with_codec_dir

    spec = with_codec_dir(load_spec(spec_path), Path("."), codecs)
    if spec.run.method != "latent":
        spec = spec.model_copy(update={"run": spec.run.model_copy(update={"method": "latent"})})
    return spec, build_plan(spec, spec_path)


def _codec_list(text: str | None):
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


def cmd_fit_codec(args) -> int:
    from runtime.codecs.distill import distill_hub
    from runtime.codecs.fit import fit_codecs

    spec, plan = _load(args.spec, args.out)
    out = spec.channels.codecs
    if not out:
        raise SpecError("no directory to write to", file=args.spec, field="channels.codecs",
                        fix="pass --out DIR or set channels.codecs in the spec")
    options = {k: v for k, v in {"hub_dim": args.hub_dim, "reference": args.reference,
                                 "ridge_lambda": args.ridge_lambda, "relative_k": args.relative_k}.items()
               if v is not None}
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    codecs = _codec_list(args.codec)
    saved = fit_codecs(spec, plan, out, args.anchors, options, quiet=args.quiet, log=log, codecs=codecs)
    if args.distill_steps:
        distill_hub(spec, plan, out, args.anchors, args.distill_steps, quiet=args.quiet, log=log, codecs=codecs)
    print(f"fitted {len(saved)} codec part(s) in {out}")
    return 0


def cmd_codec_eval(args) -> int:
    from runtime.codecs.evaluate import evaluate_codecs, format_rows

    spec, plan = _load(args.spec, args.codecs)
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    rows = evaluate_codecs(spec, plan, args.anchors, _codec_list(args.codec), args.limit, args.quiet, log)
    print(format_rows(rows) if rows else "nothing to evaluate: no hidden edge uses a fitted codec")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0
