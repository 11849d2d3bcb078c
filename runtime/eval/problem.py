"""One evaluation problem, whatever data set it came from, and the error bad data raises."""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from latentray.agents.errors import LatentrayError

TASKS = ("math", "choice", "exact", "code")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class DataError(LatentrayError, ValueError):
    """A data set that cannot be read or mapped to problems; the message names the file
    or field and says how to fix it."""


@dataclass(frozen=True)
class Problem:
    """A question, its gold answer as text and the task that says how to check it.

    For multiple choice the labels are always the letters A, B, C... in option order:
    data sets that use "1".."4" (some ARC rows) or other labels are mapped by position,
    the gold with them, so prompts and checkers only ever see letters; the original
    labels stay in meta["original_labels"].
    """

    id: str
    question: str
    gold: str
    task: str
    choices: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    context: str = ""  # private information only some agents see (generated task families)
    meta: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise DataError(f"problem {self.id!r}: unknown task {self.task!r}; use one of {', '.join(TASKS)}")
        meta = dict(self.meta)
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        set_("id", str(self.id))
        gold = "" if self.gold is None else str(self.gold)
        set_("gold", gold if self.task == "code" else gold.strip())  # code keeps its indentation
        set_("choices", tuple(str(c) for c in self.choices))
        set_("labels", tuple(str(x).strip() for x in self.labels))
        if self.task == "choice":
            labels, gold = _letter_labels(self)
            if labels != self.labels and self.labels:
                meta.setdefault("original_labels", self.labels)
            set_("labels", labels)
            set_("gold", gold)
        set_("meta", MappingProxyType(meta))

    @property
    def gold_text(self) -> str:
        """The gold option's text for multiple choice, else the gold itself."""
        if self.task == "choice":
            return self.choices[self.labels.index(self.gold)]
        return self.gold


def _letter_labels(p: Problem) -> tuple:
    """Letters for the options in order, and the gold mapped to its letter."""
    if not p.choices:
        raise DataError(f"problem {p.id!r}: a multiple-choice problem needs options; map the 'choices' field")
    if len(p.choices) > len(LETTERS):
        raise DataError(f"problem {p.id!r}: {len(p.choices)} options; at most {len(LETTERS)} are supported")
    given = p.labels or tuple(LETTERS[: len(p.choices)])
    if len(given) != len(p.choices):
        raise DataError(f"problem {p.id!r}: {len(given)} labels for {len(p.choices)} options; "
                        "give one label per option or none (A, B, C... are used)")
    letters = tuple(LETTERS[: len(p.choices)])
    folded = [g.upper() for g in given]
    if p.gold.upper() not in folded:
        raise DataError(f"problem {p.id!r}: gold answer {p.gold!r} is not one of the labels "
                        f"{', '.join(given)}; the answer field must hold the correct option's label")
    return letters, letters[folded.index(p.gold.upper())]
