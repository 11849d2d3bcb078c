"""`latentray codec-eval SPEC`: measure fitted codecs on held-out anchor texts."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from latentray.runtime.commands.spec_options import codec_list, load_spec_and_plan


def add_parser(sub) -> None:
    p = sub.add_parser("codec-eval", help="measure fitted codecs on held-out anchor texts")
    p.add_argument("spec")
    p.add_argument("--codecs", help="directory of fitted parts (default: the spec's channels.codecs)")
    p.add_argument("--anchors", help="anchor text file the codecs were fitted on (default: the shipped set)")
    p.add_argument("--codec", help="evaluate these codecs (comma-separated) for every hidden edge")
    p.add_argument("--limit", type=int, help="held-out texts to use (default: all)")
    p.add_argument("--json", help="write the rows as JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from latentray.runtime.codecs.evaluate import evaluate_codecs, format_rows

    spec, plan = load_spec_and_plan(args, method="latent")
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    rows = evaluate_codecs(spec, plan, args.anchors, codec_list(args.codec), args.limit, args.quiet, log)
    print(format_rows(rows) if rows else "nothing to evaluate: no hidden edge uses a fitted codec")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0
