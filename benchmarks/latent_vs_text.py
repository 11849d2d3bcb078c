"""Latent vs text collaboration vs a single agent on a real data set: one spec, the same
problems, models and seeds, run through the same engine as `latentray eval`.

Prints per method: accuracy with a 95% interval, decoded tokens and seconds per problem
(run time after the models loaded), and latent against text as ratios (fewer output
tokens, speed-up). Defaults: the example chain on builtin:smollm2-135m, 60 ARC-Easy
problems.

  python benchmarks/latent_vs_text.py [--spec SPEC] [--dataset arc-easy] [--limit 60]
      [--methods single,text,latent] [--max-new-tokens N] [--output DIR] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from latentray.runtime.eval.datasets import load_problems  # noqa: E402  (runtime first: sets the zero-copy flag)
from latentray.runtime.eval.results import write_method  # noqa: E402
from latentray.runtime.eval.runner import run_method  # noqa: E402
from latentray.runtime.eval.stats import format_table, method_figures  # noqa: E402
from latentray.topologies import load_spec  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "topologies/examples/latent_chain.yaml"))
    parser.add_argument("--dataset", default="arc-easy")
    parser.add_argument("--limit", type=int, default=60)
    parser.add_argument("--methods", default="single,text,latent")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--max-new-tokens", type=int)
    parser.add_argument("--output", type=Path, default=ROOT / "out" / "latent_vs_text")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    spec = load_spec(args.spec)
    problems = load_problems(args.dataset, limit=args.limit)
    rows, summaries = [], {}
    for method in args.methods.split(","):
        r, summary = run_method(spec, problems, method, dataset=args.dataset, batch_size=args.batch_size,
                                max_new_tokens=args.max_new_tokens)
        write_method(args.output, method, r, summary)
        rows += r
        summaries[method] = summary
    figures = method_figures(rows, summaries)
    print(f"{args.dataset}, {len(problems)} problems, spec {Path(args.spec).name}")
    print(format_table(figures))
    by = {f["method"]: f for f in figures}
    if "latent" in by and "text" in by:
        print(f"latent vs text: {1 - by['latent']['tokens_vs_text']:.1%} fewer output tokens, "
              f"{by['latent']['speedup_vs_text']:.2f}x faster; accuracy {by['latent']['accuracy']:.1%} vs "
              f"{by['text']['accuracy']:.1%}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
