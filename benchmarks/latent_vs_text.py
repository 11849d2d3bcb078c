"""Latent vs text collaboration vs a single agent: one spec, the same questions, the same
models and the same machine, run through the same engine.

For each method it prints tokens decoded (all agents), run time after the models loaded,
and message bytes; then latent against text as ratios (fewer output tokens, speed-up).
With tiny random models the texts are noise, so this measures cost, not accuracy; give a
spec with real checkpoints (hf:...) for both.

  python benchmarks/latent_vs_text.py [SPEC] [--input questions.jsonl] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runtime.actors import needed_resources  # noqa: E402  (sets the zero-copy flag before ray)
from runtime.engine import run_spec  # noqa: E402
from runtime.questions import read_jsonl_questions  # noqa: E402
from runtime.ray_setup import ensure_ray  # noqa: E402
from topologies import build_plan, load_spec  # noqa: E402

METHODS = ("single", "text", "latent")


def run_method(spec, method: str, questions: list) -> dict:
    spec = spec.model_copy(update={"run": spec.run.model_copy(update={"method": method})})
    plan = build_plan(spec)
    result = run_spec(spec, plan, questions, run_name=f"bench-{method}")
    return {"method": method, "agents": len(plan.agents), "questions": len(questions),
            "tokens": sum(result.tokens), "run_s": result.run_s, "wall_s": result.wall_s,
            "messages": len(result.trace), "message_bytes": sum(r["bytes"] for r in result.trace)}


def print_table(rows: list) -> None:
    print(f"{'method':>8} {'agents':>6} {'tokens':>8} {'tok/q':>7} {'run s':>8} {'messages':>9} {'MiB':>8}")
    for r in rows:
        print(f"{r['method']:>8} {r['agents']:>6} {r['tokens']:>8} {r['tokens'] / r['questions']:>7.1f} "
              f"{r['run_s']:>8.2f} {r['messages']:>9} {r['message_bytes'] / 2**20:>8.2f}")
    by = {r["method"]: r for r in rows}
    if "latent" in by and "text" in by:
        latent, text = by["latent"], by["text"]
        fewer = 1 - latent["tokens"] / max(text["tokens"], 1)
        print(f"latent vs text: {fewer:.1%} fewer output tokens, "
              f"{text['run_s'] / latent['run_s']:.2f}x faster (run time after loading)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default=str(ROOT / "topologies/examples/latent_chain.yaml"))
    parser.add_argument("--input", default=str(ROOT / "topologies/examples/questions.jsonl"))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args(argv)
    spec = load_spec(args.spec)
    questions, _ = read_jsonl_questions(args.input)
    ensure_ray(num_cpus=needed_resources(spec, build_plan(spec))["CPU"])  # room for the largest method
    rows = [run_method(spec, m, questions) for m in args.methods.split(",")]
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
