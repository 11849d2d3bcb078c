"""Problems in flight vs one batch at a time: the same spec and problems through the engine,
once with every batch submitted at once (agents work on different batches concurrently:
the planner on batch 3 while the judger finishes batch 1) and once with one batch in
flight (run.max_in_flight: 1). Prints throughput (problems per second) of each and the
ratio; answers must be identical.

  python benchmarks/pipeline.py [--spec SPEC] [--input Q.jsonl] [--batch-size 1] [--json PATH]
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


def timed(spec, questions: list, inflight) -> tuple:
    spec = spec.model_copy(update={"run": spec.run.model_copy(update={"max_in_flight": inflight})})
    result = run_spec(spec, build_plan(spec), questions, run_name=f"pipeline-{inflight}")
    return result.answers, result.run_s


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "topologies/examples/latent_chain.yaml"))
    parser.add_argument("--input", default=str(ROOT / "topologies/examples/questions.jsonl"))
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    spec = load_spec(args.spec)
    spec = spec.model_copy(update={"run": spec.run.model_copy(update={"batch_size": args.batch_size})})
    questions, _, _ = read_jsonl_questions(args.input)
    one_answers, one_s = timed(spec, questions, 1)
    all_answers, all_s = timed(spec, questions, "all")
    n = len(questions)
    print(f"{n} questions, batch {args.batch_size}, {spec.models[next(iter(spec.models))].ref}; "
          f"answers identical: {one_answers == all_answers}")
    print(f"one batch at a time: {n / one_s:.3f} problems/s ({one_s:.2f} s)")
    print(f"all batches in flight: {n / all_s:.3f} problems/s ({all_s:.2f} s) -> {one_s / all_s:.2f}x throughput")
    if args.json:
        args.json.write_text(json.dumps({"questions": n, "batch_size": args.batch_size, "one_at_a_time_s": one_s,
                                         "all_in_flight_s": all_s, "identical": one_answers == all_answers},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
