"""Numeric answers (math word problems): the number the output commits to, or none.

Where the number is read from, first rule that yields a number wins:
1. after the last `####` (the format our math prompt asks for, and GSM8K's own);
2. inside the last `\\boxed{...}` (LaTeX habit of many chat models);
3. after the last "answer is" / "answer:" / "answer =" on its line (a calculation in
   that sentence: its result after the last "=");
4. the final line, unless the output was cut off at its token limit or the line is a
   question: the number after its last "=", else its last number.
Otherwise no answer, which is wrong: an output cut off at the token limit with no
statement (it ends mid-calculation, "... 48*2 =", or mid-sentence), one ending in a
question, or one with no number.
Reading "the last number anywhere" would score the debris of a cut-off output as an
answer; tests/data/numeric_corpus.jsonl holds real outputs labelled by hand.
Numbers may carry a sign, `$`, thousands commas (1,000), decimals, a simple fraction
(3/4) or anything after them (`%`, units such as "12 km/h", a full stop).
"""
from __future__ import annotations

import re
from fractions import Fraction

from latentray.runtime.eval.problem import Problem
from latentray.runtime.eval.checkers.base import Checker, CheckResult

RELATIVE_TOLERANCE = Fraction(1, 10**6)

_INT = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)"
# Not inside a word or another number: "x2", "16-3" (the 3 is read, not "-3").
_NUMBER = re.compile(rf"(?<![\w.])[-\u2212]?\$?(?:{_INT}(?:\.\d+)?|\.\d+)(?:/\d+(?:\.\d+)?)?")
_ANSWER_IS = re.compile(r"answer\s*(?:is|was|=|:)\s*:?", re.IGNORECASE)
_FRAC = re.compile(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}")


def find_numbers(text: str) -> list:
    return _NUMBER.findall(text)


def parse_number(token: str) -> Fraction | None:
    """The exact value of one matched number ("$1,000", "-3/4", "72.0"), or None."""
    clean = token.replace(",", "").replace("$", "").replace("\u2212", "-")
    try:
        return Fraction(clean)
    except (ValueError, ZeroDivisionError):
        return None


def extract_number(text: str, cut_off: bool = False) -> tuple:
    """(number text, rule) read from an answer by the rules above; (None, "") if none."""
    for rule, segment in (("####", _after_last(text, "####")), ("boxed", _last_boxed(text)),
                          ("answer is", _after_answer_is(text))):
        if segment:
            found = find_numbers(segment)
            if found:
                return found[0], rule
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if cut_off or last.endswith("?"):
        return None, ""
    if "=" in last:  # a calculation: its result
        found = find_numbers(last.rsplit("=", 1)[1])[:1]
    else:
        found = find_numbers(last)[-1:]
    return (found[0], "final line") if found else (None, "")


def same_value(a: Fraction, b: Fraction) -> bool:
    return a == b or abs(a - b) <= RELATIVE_TOLERANCE * abs(b)


class NumericChecker(Checker):
    name = "numeric"

    def check(self, answer: str, problem: Problem, cut_off: bool = False) -> CheckResult:
        gold_tokens = find_numbers(problem.gold)
        gold = parse_number(gold_tokens[0]) if gold_tokens else None
        token, rule = extract_number(answer or "", cut_off)
        if token is None:
            return CheckResult(None, False, "no answer: no number it commits to (cut off, a question, or no number)")
        value = parse_number(token)
        extracted = token.replace(",", "").replace("$", "").replace("\u2212", "-")
        if gold is None:
            return CheckResult(extracted, False, f"gold answer {problem.gold!r} is not a number")
        if value is None:
            return CheckResult(extracted, False, f"{token!r} is not a number")
        return CheckResult(extracted, same_value(value, gold), f"read by rule: {rule}")


def _after_last(text: str, marker: str) -> str:
    at = text.rfind(marker)
    return "" if at < 0 else text[at + len(marker):].split("\n", 1)[0] or text[at + len(marker):]


def _after_answer_is(text: str) -> str:
    """What follows the last answer statement on its line; when that is a calculation
    ("The final answer is 12 * 2 = 24."), its result after the last "="."""
    matches = list(_ANSWER_IS.finditer(text))
    if not matches:
        return ""
    rest = text[matches[-1].end():].split("\n", 1)[0]
    sentence = re.split(r"[.!?](?=\s|$)", rest, maxsplit=1)[0]  # not "24. Let me check: 24 / 2 = 12"
    if "=" in sentence and find_numbers(sentence.rsplit("=", 1)[1]):
        return sentence.rsplit("=", 1)[1]
    return rest


def _last_boxed(text: str) -> str:
    """Contents of the last \\boxed{...} with nested braces matched; \\frac{a}{b} -> a/b."""
    at = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if at < 0:
        return ""
    start = text.index("{", at) + 1
    depth = 1
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            inner = text[start:i]
            break
    else:
        inner = text[start:]
    return _FRAC.sub(r"\1/\2", inner).replace("\\!", "").replace("\\,", "").replace("{", "").replace("}", "")
