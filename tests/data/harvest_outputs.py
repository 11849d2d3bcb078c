"""Collect the outputs of one `latentray eval` run into unlabelled corpus rows (JSONL on stdout).

    python tests/data/harvest_outputs.py EVAL_DIR DATASET [--task T] [--field KEY=COLUMN ...]

DATASET and the fields are those the evaluation was run with (the options of each
problem are read from it). One row per problem and method: the data set, method, problem
id, question, options and labels, gold and the model's raw output. A person then adds
"label": the letter or number a careful grader reads in the output, or "none";
tests/test_answer_corpus.py holds the checkers to those labels.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from latentray.runtime.eval.datasets import load_problems, parse_field_mapping  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("eval_dir")
    p.add_argument("dataset")
    p.add_argument("--name", help="the data set's name in the rows (default: DATASET)")
    p.add_argument("--task")
    p.add_argument("--field", action="append", default=[])
    p.add_argument("--answerer", default="judger", help="the answering agent (for runs without a cut_off column)")
    p.add_argument("--max-new-tokens", type=int, help="its token limit then")
    args = p.parse_args()
    mapping = parse_field_mapping(args.field) if args.field else None
    problems = {p.id: p for p in load_problems(args.dataset, mapping=mapping, task=args.task)}
    for method in ("single", "text", "latent"):
        path = Path(args.eval_dir) / "results" / f"{method}.parquet"
        for r in pq.read_table(path).to_pylist() if path.exists() else ():
            if r["answer"] is None:
                continue  # a failed problem has no output to read
            problem = problems[r["id"]]
            cut_off = r.get("cut_off")
            if cut_off is None and args.max_new_tokens:
                cut_off = dict(r["tokens_by_agent"]).get(args.answerer, 0) >= args.max_new_tokens
            print(json.dumps({"dataset": args.name or args.dataset, "method": method, "id": r["id"],
                              "question": problem.question, "choices": list(problem.choices),
                              "labels": list(problem.labels), "gold": problem.gold, "output": r["answer"],
                              "cut_off": bool(cut_off)}, ensure_ascii=False))


if __name__ == "__main__":
    main()
