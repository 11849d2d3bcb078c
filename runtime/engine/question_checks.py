"""Check one question before it reaches a model: a problem that cannot be asked fails alone,
with a reason naming what is wrong, and the rest of the run goes on."""
from __future__ import annotations

import unicodedata

# Control characters other than tab, newline and carriage return mark binary content.
_ALLOWED_CONTROLS = {"\t", "\n", "\r"}


def _text_problem(text, what: str, max_chars: int) -> str | None:
    if not isinstance(text, str):
        return f"{what} must be a string, not {type(text).__name__}"
    if not text.strip():
        return f"{what} is empty; give some text"
    if len(text) > max_chars:
        return (f"{what} has {len(text)} characters, more than limits.max_question_chars = {max_chars}; "
                "shorten it or raise the limit")
    for offset, ch in enumerate(text):
        if ch in _ALLOWED_CONTROLS:
            continue
        category = unicodedata.category(ch)
        if category == "Cc":
            return f"{what} holds binary content (control character U+{ord(ch):04X} at offset {offset}); give text"
        if category == "Cs":
            return (f"{what} is not valid Unicode (lone surrogate U+{ord(ch):04X} at offset {offset}); "
                    "give UTF-8 text")
    return None


def rejected_questions(questions: list, max_chars: int, known: dict | None = None) -> dict:
    """{index: reason} of the questions that cannot run: `known` (found while reading them)
    and each one question_problem refuses."""
    bad = dict(known or {})
    for i, q in enumerate(questions):
        if i not in bad:
            reason = question_problem(q, max_chars)
            if reason:
                bad[i] = reason
    return bad


def question_problem(question, max_chars: int) -> str | None:
    """Why `question` cannot run (None if it can): a string, or a mapping with a 'question'
    and an optional 'context' (the two together count against max_chars)."""
    if isinstance(question, dict):
        if "question" not in question:
            return "the problem has no 'question' field"
        text, context = question["question"], question.get("context") or ""
        return (_text_problem(text, "the question", max_chars)
                or (context and _text_problem(context, "the context", max(max_chars - len(str(text)), 1))) or None)
    return _text_problem(question, "the question", max_chars)
