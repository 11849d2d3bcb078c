"""What each channel really carries: the split-information task (a private note only the
sender reads, a question only the receiver sees) run once per channel on the same
problems, models and seeds:

  none            the receiver alone (method single): no message
  text            the sender writes the note out, the receiver reads it (method text)
  kv              the sender's whole KV cache: its prompt (with the note) and latent steps
  kv_latent_only  only the sender's latent-step slots of that cache
  hidden          the sender's latent thoughts as soft tokens in the receiver's input

  python benchmarks/information_transfer.py [--limit 100] [--output DIR] [--json PATH]

Prints accuracy with a 95% interval, message bytes, decoded tokens and seconds per
problem per channel, and writes one Parquet part per channel under --output.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runtime.eval.datasets import load_problems  # noqa: E402  (runtime first: sets the zero-copy flag)
from runtime.eval.results import write_method  # noqa: E402
from runtime.eval.runner import run_method  # noqa: E402
from runtime.eval.stats import method_figures  # noqa: E402
from topologies import load_spec  # noqa: E402

SPEC = ROOT / "topologies/examples/split_info.yaml"
# channel -> (method, channels overrides)
CHANNELS = {
    "none": ("single", {}),
    "text": ("text", {}),
    "kv": ("latent", {"kind": "kv"}),
    "kv_latent_only": ("latent", {"kind": "kv", "compression": ("latent_only",)}),
    "hidden": ("latent", {"kind": "hidden"}),
}


def with_channels(spec, overrides: dict):
    return spec.model_copy(update={"channels": spec.channels.model_copy(update=overrides)})


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(SPEC))
    parser.add_argument("--dataset", default="split-info")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--channels", default=",".join(CHANNELS))
    parser.add_argument("--output", type=Path, default=ROOT / "out" / "information_transfer")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    spec = load_spec(args.spec)
    problems = load_problems(args.dataset, limit=args.limit)
    rows, summaries = [], {}
    for name in args.channels.split(","):
        method, overrides = CHANNELS[name]
        r, summary = run_method(with_channels(spec, overrides), problems, method, dataset=args.dataset)
        for row in r:
            row["method"] = name
        summary.update(channel=name, method=method)
        write_method(args.output, name, r, summary)
        rows += r
        summaries[name] = summary
        print(f"[bench] {name}: {sum(x['correct'] for x in r)}/{len(r)} correct", file=sys.stderr, flush=True)
    figures = method_figures(rows, summaries)
    print(f"split information, {len(problems)} problems, {spec.models[next(iter(spec.models))].ref}")
    print(f"{'channel':<15} {'accuracy (95% CI)':>22} {'message bytes':>14} {'tokens':>7} {'s/problem':>10}")
    for f in figures:
        acc = f"{f['accuracy']:6.1%} ({f['ci_low']:.1%}-{f['ci_high']:.1%})"
        print(f"{f['method']:<15} {acc:>22} {f['message_bytes_per_problem']:>14,.0f} "
              f"{f['tokens_per_problem']:>7.1f} {f['seconds_per_problem']:>10.2f}")
    kind_of = {p.id: p.meta["kind"] for p in problems}
    print("correct per fact kind:")
    for name in summaries:
        mine = [r for r in rows if r["method"] == name]
        counts = {k: [0, 0] for k in sorted(set(kind_of.values()))}
        for r in mine:
            counts[kind_of[r["id"]]][0] += r["correct"]
            counts[kind_of[r["id"]]][1] += 1
        print(f"  {name:<15} " + ", ".join(f"{k} {c}/{n}" for k, (c, n) in counts.items()))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
