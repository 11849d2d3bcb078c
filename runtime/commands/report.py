"""`latentray report DIR`: an evaluation's comparison table again, and its plots."""
from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="redraw an evaluation's table and plots")
    p.add_argument("dir", help="the --output directory of `latentray eval`")
    p.add_argument("--no-plots", action="store_true", help="print the table only")


def run(args) -> int:
    from latentray.runtime.eval.report import print_report

    print_report(Path(args.dir), plots=not args.no_plots)
    return 0
