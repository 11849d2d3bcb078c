"""Read the questions of a run: --question flags, or a JSONL file with a 'question' field.

A file that cannot be questions at all (missing, binary, no line readable) is refused
whole. A line that cannot be read (not UTF-8, not JSON, no 'question', longer than the
limits allow) becomes a problem that fails with its file and line, and the others run.
"""
from __future__ import annotations

import json
from pathlib import Path

from latentray.runtime.engine.errors import RunError

# Bytes of a file's start searched for NUL: text never holds one, binary files nearly always do.
_SNIFF_BYTES = 8192


def safe_text(text: str) -> str:
    """`text` with bytes that are not UTF-8 written as escapes: Python hands such command-line
    bytes over as lone surrogates, which no file or Parquet column can hold."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that stands for no byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _line_problem(raw: bytes, where: str, max_line_bytes: int) -> tuple:
    """(question or placeholder text, id or None, reason or None) of one line."""
    if len(raw) > max_line_bytes:
        return raw[:80].decode("utf-8", "replace") + "...", None, (
            f"{where}: the line is longer than {max_line_bytes} bytes, more than limits.max_question_chars "
            "allows; shorten the question or raise the limit")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return raw.decode("utf-8", "backslashreplace"), None, (
            f"{where}: not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); save the file as UTF-8")
    try:
        row = json.loads(text)
    except json.JSONDecodeError as exc:
        return text, None, f"{where}: not valid JSON ({exc.msg}); write one JSON object per line"
    if not isinstance(row, dict) or not isinstance(row.get("question"), str):
        return text, None, f"{where}: each line needs a string field 'question'"
    return safe_text(row["question"]), row.get("id"), None


def read_jsonl_questions(path: str, max_question_chars: int = 65536) -> tuple:
    """Return (questions, ids, rejected): each line is {"question": ..., "id"?: ...};
    rejected maps the index of each unreadable line's problem to the reason."""
    p = Path(path)
    if not p.is_file():
        raise RunError(f"input file not found: {path}")
    with open(p, "rb") as f:
        head = f.read(_SNIFF_BYTES)
    if b"\0" in head:
        at = head.index(b"\0")
        raise RunError(f"{path}: binary content (a NUL byte at offset {at}), not JSONL; give a "
                       "text file with one {\"question\": ...} object per line")
    # A question of max_question_chars characters is at most 4 bytes each in UTF-8, twice
    # that escaped in JSON; a longer line is refused without being decoded.
    max_line_bytes = 8 * max_question_chars + 4096
    questions, ids, rejected = [], [], {}
    with open(p, "rb") as f:
        for n, raw in enumerate(_lines(f, max_line_bytes), 1):
            if not raw.strip():
                continue
            question, qid, reason = _line_problem(raw, f"{path}:{n}", max_line_bytes)
            if reason:
                rejected[len(questions)] = reason
            questions.append(question)
            ids.append(qid if qid is not None else len(ids))
    if not questions:
        raise RunError(f"{path}: no questions in the file; add lines like {{\"question\": \"...\"}}")
    if len(rejected) == len(questions):
        raise RunError(f"{path}: no line is a question ({next(iter(rejected.values()))}); write one JSON "
                       "object per line with a 'question' field")
    return questions, ids, rejected


def _lines(f, max_line_bytes: int):
    """The file's lines without their newline; a line longer than max_line_bytes is yielded
    as its first max_line_bytes + 1 bytes (enough to refuse it) and the rest is skipped."""
    while True:
        line = f.readline(max_line_bytes + 1)
        if not line:
            return
        if len(line) > max_line_bytes and not line.endswith(b"\n"):
            while True:  # skip to the end of the over-long line without holding it
                rest = f.readline(1 << 20)
                if not rest or rest.endswith(b"\n"):
                    break
        yield line.rstrip(b"\r\n")
