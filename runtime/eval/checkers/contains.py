"""Short factual answers inside a sentence: correct when the normalised gold appears in
the normalised answer as whole words ("It is called Priya." holds "priya"). Small models
sometimes run words together after latent steps ("calledPriya"); the gold then counts
when it appears in the answer with every space removed, and the detail says so. Used
where a gold is a name that a chat model wraps in a sentence; not for numbers or
options, where a listing of every candidate would pass."""
from __future__ import annotations

import re

from runtime.eval.problem import Problem
from runtime.eval.checkers.base import Checker, CheckResult
from runtime.eval.checkers.exact import normalise


class ContainsChecker(Checker):
    name = "contains"

    def check(self, answer: str, problem: Problem) -> CheckResult:
        gold = normalise(problem.gold)
        text = normalise(answer)
        if gold and re.search(rf"(?<!\w){re.escape(gold)}(?!\w)", text):
            return CheckResult(gold, True, "found")
        if gold and gold.replace(" ", "") in text.replace(" ", ""):
            return CheckResult(gold, True, "found, words run together")
        return CheckResult(None, False, "not found")
