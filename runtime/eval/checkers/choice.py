"""Multiple-choice answers: the one option the model commits to, or none.

Only the problem's own labels count as letters. The rules, in order:
1. an answer phrase ("The answer is (B)", "Answer: b", "correct option is **C**",
   "I would pick D"): the last one counts. A bare lowercase "a"/"i" followed by a word is
   the article or pronoun ("the answer is a car"). If the phrase's letter is followed by
   the text of another option ("The answer is D. African Plate" where that plate is B),
   the output contradicts itself: no answer.
2. the first and the last line, where each is the letter alone ("B", "(B)", "**B**",
   "B.") or opens with it ("B. zinc", "B) ..."): the letter, if they agree. A line whose
   letter is followed by another option's text ("B. evaporates" where that is C), or a
   first and a last line naming different letters, contradict: no answer. Lines of an
   echoed option list (a lettered line next to one with another letter) do not count,
   and an output that only echoes the list has no answer.
3. the text of exactly one option (case, punctuation and spacing ignored, whole words).

Everything else is no answer, and no answer is wrong: letters inside words or sentences
("Vitamin C is important", "Plan B would be"), a letter opening a line in the middle.
A careful grader reads the same way: tests/data/ holds real outputs labelled by hand.
"""
from __future__ import annotations

import re

from latentray.runtime.eval.problem import Problem
from latentray.runtime.eval.checkers.base import Checker, CheckResult

_OPEN, _CLOSE = r"[\(\[\*]*", r"[\)\]\*]*"
# one line only ([ \t], not \s): "the correct answer\nA. iron" is a heading over a list
_ANSWER_PHRASE = re.compile(
    r"(?:answer|option|choice|i[ \t]+(?:would[ \t]+|will[ \t]+)?(?:choose|pick|select|go[ \t]+with))[ \t]*"
    r"(?:is|would[ \t]+be|should[ \t]+be|:|=)?[ \t]*:?[ \t]*"
    rf"(?:option|choice|letter)?[ \t]*({_OPEN})[ \t]*([A-Za-z])[ \t]*({_CLOSE})(?![A-Za-z0-9'])([ \t]+[A-Za-z])?",
    re.IGNORECASE)
# "... is indeed D." / "... is (C)": a capital letter that ends a statement
_IS_LETTER = re.compile(r"\bis[ \t]+(?:indeed[ \t]+|clearly[ \t]+|therefore[ \t]+)?()\(?([A-Z])()\)?(?=[.)!,:;]|[ \t]*$)()",
                        re.MULTILINE)
_ONLY_LETTER = re.compile(r"^[\W_]*([A-Z])[\W_]*$")
_LETTERED = re.compile(r"^[\W_]*([A-Z])\s*[.):\]]\s*(.*)$")
CONTRADICTS = "contradicts"


def extract_letter(answer: str, choices: tuple, labels: tuple) -> tuple:
    """(letter, rule) by rules 1-2, (None, reason) where they find a contradiction or an
    echo, or (None, "") where they find nothing."""
    options = {label.upper(): _squash(text) for label, text in zip(labels, choices)}
    phrase = _phrase(answer, options)
    if phrase is not None:
        return phrase
    lines = [line.strip() for line in answer.splitlines() if line.strip()]
    listed = _listed(lines)
    ends = [i for i in sorted({0, len(lines) - 1}) if lines and i not in listed]
    read = {_line_letter(lines[i], options) for i in ends}
    read.discard(None)
    if CONTRADICTS in read:
        return None, "a line's letter and the option text after it disagree"
    letters = {x for x in read if x in options}
    if len(letters) > 1:
        return None, "the first and the last line name different options"
    if letters:
        return letters.pop(), "letter line"
    if listed:
        return None, "the output echoes the option list"
    return None, ""


def extract_option_text(answer: str, choices: tuple, labels: tuple) -> str | None:
    """The label of the one option whose text the answer contains, else None."""
    said = f" {_normalise(answer)} "
    hits = [label for label, text in zip(labels, choices) if _normalise(text) and f" {_normalise(text)} " in said]
    return hits[0] if len(hits) == 1 else None


class ChoiceChecker(Checker):
    name = "choice"

    def check(self, answer: str, problem: Problem, cut_off: bool = False) -> CheckResult:
        letter, rule = extract_letter(answer or "", problem.choices, problem.labels)
        if letter is None and rule == "":
            letter = extract_option_text(answer or "", problem.choices, problem.labels)
            rule = "option text" if letter else ""
        if letter is None:
            why = rule or "no committed option letter or option text"
            return CheckResult(None, False, f"no answer: {why}")
        return CheckResult(letter, letter == problem.gold.upper(), f"read by rule: {rule}")


def _phrase(text: str, options: dict) -> tuple | None:
    """(letter, "answer phrase") of the last answer phrase naming a label, (None, reason)
    if it contradicts itself, None if there is no such phrase."""
    last = None
    found = sorted([*_ANSWER_PHRASE.finditer(text), *_IS_LETTER.finditer(text)], key=lambda m: m.start(2))
    for m in found:
        opened, letter, closed, next_word = m.groups()
        if letter in "ai" and not (opened or closed) and next_word:
            continue  # "the answer is a car"
        if letter.upper() in options:
            last = m
    if last is None:
        return None
    letter = last.group(2).upper()
    rest = text[last.end(3):].split("\n", 1)[0]
    if _names_another(rest, letter, options):
        return None, "the answer phrase's letter and the option text after it disagree"
    return letter, "answer phrase"


def _listed(lines: list) -> set:
    """Indices of the lines that belong to a list of options: a lettered line (or a letter
    alone) next to one with another letter ("A. iron" above "B. zinc")."""
    letters = [m.group(1) if (m := _LETTERED.match(line) or _ONLY_LETTER.match(line)) else None for line in lines]
    return {i for i, x in enumerate(letters) if x and any(
        0 <= j < len(lines) and letters[j] and letters[j] != x for j in (i - 1, i + 1))}


def _line_letter(line: str, options: dict) -> str | None:
    """The letter a line alone or opening with a letter names; CONTRADICTS if the text
    after it is another option's; None if it is no such line."""
    m = _ONLY_LETTER.match(line)
    if m:
        return m.group(1)
    m = _LETTERED.match(line)
    if not m or m.group(1) not in options:
        return None
    return CONTRADICTS if _names_another(m.group(2), m.group(1), options) else m.group(1)


def _names_another(text: str, letter: str, options: dict) -> bool:
    """Whether the first sentence of `text` is exactly another option's text (spacing,
    case and punctuation aside): "CsO. This is..." names CsO."""
    text = re.sub(r"^[\s.):\]*]+", "", text)  # the separator after the letter ("D. CsO")
    said = _squash(re.split(r"[.!?;](?=\s|$)", text, maxsplit=1)[0])
    return bool(said) and said != options.get(letter) and said in {t for k, t in options.items() if k != letter}


def _squash(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.lower())


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())
