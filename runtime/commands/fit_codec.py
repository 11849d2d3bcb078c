"""`latentray fit-codec SPEC`: fit the codec parts a spec's edges need, on anchor texts."""
from __future__ import annotations

import sys

from latentray.runtime.commands.spec_options import codec_list, load_for_parts


def add_parser(sub) -> None:
    p = sub.add_parser("fit-codec", help="fit the codec parts a spec's edges need")
    p.add_argument("spec")
    p.add_argument("--out", help="directory for the parts (default: the spec's channels.codecs)")
    p.add_argument("--anchors", help="anchor text file, one anchor a line (default: the shipped set)")
    p.add_argument("--codec", help="fit these codecs (comma-separated) for every hidden edge instead of each "
                   "edge's own, e.g. to compare ridge,relative,hub")
    p.add_argument("--hub-dim", type=int, help="hub space dimension (default 512, at most the reference's size)")
    p.add_argument("--reference", help="hub reference model ref (default: the first sender's model)")
    p.add_argument("--ridge-lambda", type=float, help="ridge penalty relative to the mean eigenvalue (1e-3)")
    p.add_argument("--relative-k", type=int, help="anchor points of the relative codec (default 1024)")
    p.add_argument("--distill-steps", type=int, default=0,
                   help="after the closed-form fit, train the hub's maps by distillation for N steps")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from latentray.runtime.codecs.distill import distill_hub
    from latentray.runtime.codecs.fit import fit_codecs

    spec, plan, out = load_for_parts(args)
    options = {k: v for k, v in {"hub_dim": args.hub_dim, "reference": args.reference,
                                 "ridge_lambda": args.ridge_lambda, "relative_k": args.relative_k}.items()
               if v is not None}
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    codecs = codec_list(args.codec)
    saved = fit_codecs(spec, plan, out, args.anchors, options, quiet=args.quiet, log=log, codecs=codecs)
    if args.distill_steps:
        distill_hub(spec, plan, out, args.anchors, args.distill_steps, quiet=args.quiet, log=log, codecs=codecs)
    print(f"fitted {len(saved)} codec part(s) in {out}")
    return 0
