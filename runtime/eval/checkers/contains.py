"""Short factual answers inside a sentence: correct when the normalised gold appears in
the normalised answer as whole words ("It is called Priya." holds "priya").

Small models sometimes run words together after latent steps ("calledPriya",
"inNewYork"). The gold then counts only where the run-together words show it: its words
(spaces between them optional) start at a capital letter that follows a lower-case one,
and end before a capital, a non-letter or the end. A gold inside an ordinary word does
not count: "mosquito" does not hold "Quito", "climate" not "Lima", "time in" not "Mei".
Used where a gold is a name that a chat model wraps in a sentence; not for numbers or
options, where a listing of every candidate would pass."""
from __future__ import annotations

import re

from latentray.runtime.eval.problem import Problem
from latentray.runtime.eval.checkers.base import Checker, CheckResult
from latentray.runtime.eval.checkers.exact import normalise


def run_together(answer: str, gold: str) -> bool:
    """Whether `gold` (its words) appears in `answer` joined to the words around it at a
    change of case: "calledTomas", "TomasIs", "inNewYork"."""
    words = [re.escape(w) for w in re.findall(r"\w+", gold)]
    if not words:
        return False
    pattern = re.compile(r"\s*".join(words), re.IGNORECASE)
    for m in pattern.finditer(answer):
        before = answer[m.start() - 1] if m.start() else ""
        after = answer[m.end()] if m.end() < len(answer) else ""
        first = answer[m.start()]
        joined_left = before.isalpha() and before.islower() and first.isupper()
        open_left = not before.isalnum()
        open_right = not after.isalpha() or after.isupper()
        if (joined_left or open_left) and open_right and (joined_left or after.isupper()):
            return True
    return False


class ContainsChecker(Checker):
    name = "contains"

    def check(self, answer: str, problem: Problem, cut_off: bool = False) -> CheckResult:
        text = normalise(answer)
        # Sets with several accepted answers (SQuAD's crowd answers) list the others in meta.
        for given in (problem.gold, *problem.meta.get("alternatives", ())):
            gold = normalise(given)
            if gold and re.search(rf"(?<!\w){re.escape(gold)}(?!\w)", text):
                return CheckResult(gold, True, "found")
            if gold and run_together(answer or "", given):
                return CheckResult(gold, True, "found, words run together")
        return CheckResult(None, False, "not found")
