"""Multiple-choice answers: read one option letter from free text.

Only the problem's own labels count as letters. Rules in order of precedence; the first
that finds a valid letter wins, and within a rule the last occurrence wins (models tend
to reason first and conclude last):
1. an answer phrase: "The answer is (B)", "Answer: b", "correct option is **C**";
   a bare lowercase "a"/"i" followed by a word is the article/pronoun, not a letter
   ("the answer is a car");
2. a line that is only the letter, maybe wrapped or punctuated: "B", "(B)", "**B**", "B.";
3. a marked letter anywhere: "(C) ten", "[C]", "**C**", or "C." / "C)" / "C:" opening a line;
4. a bare capital letter standing alone ("I pick B"), except "A"/"I" followed by a
   lowercase word, which read as "A car ..." / "I think ...";
5. no letter: the option whose text appears in the answer (case, punctuation and
   spacing ignored, whole words), if exactly one does.
"""
from __future__ import annotations

import re

from runtime.eval.problem import Problem
from runtime.eval.checkers.base import Checker, CheckResult

_OPEN, _CLOSE = r"[\(\[\*]*", r"[\)\]\*]*"
_ANSWER_PHRASE = re.compile(
    rf"(?:answer|option|choice)\s*(?:is|:|=)?\s*:?\s*(?:option|choice|letter)?\s*({_OPEN})\s*([A-Za-z])\s*({_CLOSE})"
    r"(?![A-Za-z0-9'])(\s+[A-Za-z])?", re.IGNORECASE)
_ONLY_LETTER = re.compile(r"^[\W_]*([A-Za-z])[\W_]*$")
_MARKED = re.compile(r"\(\s*([A-Za-z])\s*\)|\[\s*([A-Za-z])\s*\]|\*\*\s*([A-Za-z])\s*\*\*|^\s*([A-Z])[.):](?=\s|$)",
                     re.MULTILINE)
_BARE = re.compile(r"(?<![\w'])([A-Z])(?![\w'])(\s+[a-z])?")


def extract_letter(answer: str, labels: tuple) -> tuple:
    """(letter, rule) by the rules above, or (None, "")."""
    valid = {label.upper() for label in labels}
    for rule, letters in (("answer phrase", _phrase_letters(answer)), ("letter line", _line_letters(answer)),
                          ("marked letter", _marked_letters(answer)), ("bare letter", _bare_letters(answer))):
        found = [x.upper() for x in letters if x.upper() in valid]
        if found:
            return found[-1], rule
    return None, ""


def extract_option_text(answer: str, choices: tuple, labels: tuple) -> str | None:
    """The label of the one option whose text the answer contains, else None."""
    said = f" {_normalise(answer)} "
    hits = [label for label, text in zip(labels, choices) if _normalise(text) and f" {_normalise(text)} " in said]
    return hits[0] if len(hits) == 1 else None


class ChoiceChecker(Checker):
    name = "choice"

    def check(self, answer: str, problem: Problem) -> CheckResult:
        letter, rule = extract_letter(answer or "", problem.labels)
        if letter is None:
            letter, rule = extract_option_text(answer or "", problem.choices, problem.labels), "option text"
        if letter is None:
            return CheckResult(None, False, "no option letter or option text in the answer")
        return CheckResult(letter, letter == problem.gold.upper(), f"read by rule: {rule}")


def _phrase_letters(text: str) -> list:
    out = []
    for m in _ANSWER_PHRASE.finditer(text):
        opened, letter, closed, next_word = m.groups()
        if letter in "ai" and not (opened or closed) and next_word:
            continue  # "the answer is a car"
        out.append(letter)
    return out


def _line_letters(text: str) -> list:
    return [m.group(1) for line in text.splitlines() if (m := _ONLY_LETTER.match(line.strip()))]


def _marked_letters(text: str) -> list:
    return [next(g for g in m.groups() if g) for m in _MARKED.finditer(text)]


def _bare_letters(text: str) -> list:
    return [m.group(1) for m in _BARE.finditer(text) if not (m.group(1) in "AI" and m.group(2))]


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())
