"""What every answer checker returns, and the interface it implements."""
from __future__ import annotations

from dataclasses import dataclass

from latentray.agents.errors import LatentrayError

from latentray.runtime.eval.problem import Problem


class CheckerError(LatentrayError, ValueError):
    """An unknown checker or task name; the message lists the valid ones."""


@dataclass(frozen=True)
class CheckResult:
    extracted: str | None  # what the checker read as the answer (None: nothing usable)
    correct: bool
    detail: str = ""


class Checker:
    """Scores one model answer against one problem's gold answer."""

    name = ""

    def check(self, answer: str, problem: Problem, cut_off: bool = False) -> CheckResult:
        """cut_off: the answer stopped at its agent's token limit (it may end mid-sentence)."""
        raise NotImplementedError
