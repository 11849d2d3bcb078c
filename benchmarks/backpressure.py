"""Backpressure: the same spec and problems with different run.max_in_flight values; prints
each run's sampled peak object-store use, bytes spilled, throughput, and the peak as a
fraction of what the run moved. Answers must be identical across the runs.

  python benchmarks/backpressure.py [--spec SPEC] [--problems N] [--batch-size B]
                                    [--in-flight 1,auto,all] [--json PATH]

Defaults: the main job's chain (SmolLM2-135M, KV working memory) on N copies of the
example questions.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from latentray.runtime.engine.run import run_spec  # noqa: E402  (runtime first: sets the zero-copy flag)
from latentray.runtime.engine.questions import read_jsonl_questions  # noqa: E402
from latentray.topologies import build_plan, load_spec  # noqa: E402


def one_run(spec, questions: list, in_flight) -> dict:
    value = in_flight if in_flight in ("auto", "all") else int(in_flight)
    spec = spec.model_copy(update={"run": spec.run.model_copy(update={"max_in_flight": value})})
    r = run_spec(spec, build_plan(spec), questions, run_name=f"backpressure-{in_flight}")
    moved = sum(row["bytes"] for row in r.trace)
    return {"in_flight": in_flight, "limit": r.max_in_flight, "peak_in_flight": r.peak_in_flight,
            "peak_store_bytes": r.peak_store_bytes, "spilled_bytes": r.spilled_bytes, "moved_bytes": moved,
            "run_s": r.run_s, "problems_per_s": len(questions) / r.run_s, "answers": r.answers}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", default=str(ROOT / "topologies/examples/latent_chain.yaml"))
    p.add_argument("--problems", type=int, default=48)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--in-flight", default="1,auto,all")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    spec = load_spec(args.spec)
    spec = spec.model_copy(update={"run": spec.run.model_copy(update={"batch_size": args.batch_size})})
    base, _, _ = read_jsonl_questions(str(ROOT / "topologies/examples/questions.jsonl"))
    questions = [base[i % len(base)] for i in range(args.problems)]
    runs = [one_run(spec, questions, v.strip()) for v in args.in_flight.split(",")]
    same = all(r["answers"] == runs[0]["answers"] for r in runs)
    print(f"{args.problems} problems, batch {args.batch_size}, {spec.models[next(iter(spec.models))].ref}; "
          f"answers identical across runs: {same}")
    for r in runs:
        peak = r["peak_store_bytes"] or 0
        print(f"max_in_flight {r['in_flight']:>4} (limit {r['limit']}, at most {r['peak_in_flight']} in flight): "
              f"peak store {peak / 2**20:8.1f} MiB = {peak / max(r['moved_bytes'], 1):.2f} of the "
              f"{r['moved_bytes'] / 2**20:.1f} MiB moved; spilled {(r['spilled_bytes'] or 0) / 2**20:.1f} MiB; "
              f"{r['problems_per_s']:.3f} problems/s")
    if args.json:
        for r in runs:
            r.pop("answers")
        args.json.write_text(json.dumps({"problems": args.problems, "batch_size": args.batch_size,
                                         "identical": same, "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
