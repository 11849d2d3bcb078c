"""The majority vote of a mesh whose agents each answer (judger: majority).

Agents phrase one answer differently ("The answer is 42.", "42", "So we get 42"), so the
vote compares what each text commits to, not the raw strings: an "answer is X" phrase, a
final number, a choice letter on its own, else the text itself with case, spacing and
trailing punctuation folded. The winner is the earliest text whose key has the most votes
(ties go to the earliest agent, in the plan's order), returned as that agent wrote it.
"""
from __future__ import annotations

import re
from collections import Counter

_ANSWER_PHRASE = re.compile(r"answer\s*(?:is|:)\s*\(?([A-Za-z0-9][^\s.,;)]*)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_LONE_LETTER = re.compile(r"^\(?([A-Z])\)?[.:]?$")


def _number(text: str) -> str:
    value = text.replace(",", "")
    return value.rstrip("0").rstrip(".") if "." in value else value


def vote_key(text: str) -> str:
    """What an answer commits to, as a string two agreeing answers share."""
    text = text.strip()
    phrase = _ANSWER_PHRASE.findall(text)
    if phrase:
        said = phrase[-1].strip()
        return _number(said) if _NUMBER.fullmatch(said) else said.lower()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines and _LONE_LETTER.match(lines[-1]):
        return _LONE_LETTER.match(lines[-1]).group(1).lower()
    numbers = _NUMBER.findall(text)
    if numbers:
        return _number(numbers[-1])
    return " ".join(text.lower().split()).rstrip(".!")


def majority(texts: list) -> str:
    keys = [vote_key(t) for t in texts]
    counts = Counter(keys)
    best = max(counts.values())
    return next(t for t, k in zip(texts, keys) if counts[k] == best)
