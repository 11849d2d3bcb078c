"""The checkers against labelled real outputs: every label a careful grader gave must be
what the checker reads, and "none" (no committed answer) must read as no answer.

tests/data/choice_corpus.jsonl and numeric_corpus.jsonl hold outputs of
`builtin:smollm2-135m` from `latentray eval` runs (commands in tests/data/README.md),
each with the letter or number a careful grader reads, or "none". A checker that reads
an answer into "none" would score noise as knowledge; one that misses a committed answer
would score knowledge as noise.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from latentray.runtime.eval.checkers import get_checker
from latentray.runtime.eval.problem import Problem

DATA = Path(__file__).resolve().parent / "data"


def corpus(name: str) -> list:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def read_by(checker: str, row: dict) -> str:
    if checker == "choice":
        problem = Problem(id=row["id"], question=row["question"], gold=row["gold"], task="choice",
                          choices=tuple(row["choices"]), labels=tuple(row["labels"]))
    else:
        problem = Problem(id=row["id"], question=row["question"], gold=row["gold"], task="math")
    result = get_checker(checker).check(row["output"], problem, cut_off=row["cut_off"])
    return "none" if result.extracted is None else result.extracted


def agreement(checker: str, rows: list) -> dict:
    """{"disagree": [(id, label, read)], "none_precision": p, "none_read": n, ...}."""
    read = [read_by(checker, r) for r in rows]
    wrong = [(r["id"], r["method"], r["label"], x) for r, x in zip(rows, read) if _norm(x) != _norm(r["label"])]
    said_none = [r for r, x in zip(rows, read) if x == "none"]
    right_none = [r for r in said_none if r["label"] == "none"]
    return {"disagree": wrong, "none_read": len(said_none), "none_labelled": sum(r["label"] == "none" for r in rows),
            "none_precision": len(right_none) / len(said_none) if said_none else 1.0}


def _norm(value: str) -> str:
    """Numbers compare as numbers ("18.0" is "18"); letters and "none" as they are."""
    try:
        number = float(value)
    except ValueError:
        return value.upper() if len(value) == 1 else value
    return repr(number)


@pytest.mark.parametrize("name, checker, sources", [
    ("choice_corpus.jsonl", "choice", {"arc-easy", "openbookqa"}),
    ("numeric_corpus.jsonl", "numeric", {"gsm8k"}),
])
def test_the_checker_agrees_with_every_label(name, checker, sources):
    rows = corpus(name)
    assert {r["dataset"] for r in rows} == sources
    assert {r["method"] for r in rows} == {"single", "text", "latent"}
    figures = agreement(checker, rows)
    print(f"{checker}: {len(rows)} labelled outputs, {len(rows) - len(figures['disagree'])} agree; "
          f"'none' read {figures['none_read']} times ({figures['none_labelled']} labelled), "
          f"precision {figures['none_precision']:.3f}")
    assert figures["disagree"] == []
    assert figures["none_precision"] == 1.0


def test_the_corpora_are_large_and_varied_enough():
    choice, numeric = corpus("choice_corpus.jsonl"), corpus("numeric_corpus.jsonl")
    assert len(choice) + len(numeric) >= 300
    for rows in (choice, numeric):
        labels = [r["label"] for r in rows]
        assert labels.count("none") >= 10 and len(set(labels)) >= 4  # both kinds of verdict are exercised
        assert len({(r["dataset"], r["id"], r["method"]) for r in rows}) == len(rows)
