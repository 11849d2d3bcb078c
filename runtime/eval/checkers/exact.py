"""Exact-match answers: equal after normalising case, punctuation, articles and spacing
(the SQuAD convention); the whole answer or its last non-empty line may match."""
from __future__ import annotations

import re
import string

from latentray.runtime.eval.problem import Problem
from latentray.runtime.eval.checkers.base import Checker, CheckResult

_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalise(text: str) -> str:
    text = (text or "").lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


class ExactChecker(Checker):
    name = "exact"

    def check(self, answer: str, problem: Problem, cut_off: bool = False) -> CheckResult:
        gold = normalise(problem.gold)
        whole = normalise(answer)
        lines = [line for line in (answer or "").splitlines() if line.strip()]
        last = normalise(lines[-1]) if lines else ""
        if whole == gold:
            return CheckResult(whole, bool(gold), "whole answer")
        if last == gold:
            return CheckResult(last, bool(gold), "last line")
        return CheckResult(last or None, False, "no match")
