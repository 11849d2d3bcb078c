"""Answer checkers: one file each, one registry line each. A task names its default
checker; `latentray eval` may pick another by name."""
from __future__ import annotations

from latentray.runtime.eval.checkers.base import Checker, CheckerError, CheckResult
from latentray.runtime.eval.checkers.choice import ChoiceChecker
from latentray.runtime.eval.checkers.code import CodeChecker
from latentray.runtime.eval.checkers.contains import ContainsChecker
from latentray.runtime.eval.checkers.exact import ExactChecker
from latentray.runtime.eval.checkers.numeric import NumericChecker

CHECKERS: dict = {
    "numeric": NumericChecker(),
    "choice": ChoiceChecker(),
    "exact": ExactChecker(),
    "code": CodeChecker(),
    "contains": ContainsChecker(),
}

TASK_CHECKERS = {"math": "numeric", "choice": "choice", "exact": "exact", "code": "code"}


def get_checker(name: str) -> Checker:
    try:
        return CHECKERS[name]
    except KeyError:
        raise CheckerError(f"unknown checker {name!r}; use one of {', '.join(sorted(CHECKERS))}") from None


def checker_for(task: str, override: str | None = None) -> Checker:
    """The checker a problem names (override, from its meta), else its task's default
    (math -> numeric, ...)."""
    if override:
        return get_checker(override)
    if task not in TASK_CHECKERS:
        raise CheckerError(f"no checker for task {task!r}; tasks are {', '.join(TASK_CHECKERS)}")
    return CHECKERS[TASK_CHECKERS[task]]


__all__ = ["CHECKERS", "TASK_CHECKERS", "Checker", "CheckerError", "CheckResult", "checker_for", "get_checker"]
