"""Read the questions of a run: --question flags, or a JSONL file with a 'question' field."""
from __future__ import annotations

import json
from pathlib import Path

from .errors import RunError


def read_jsonl_questions(path: str) -> tuple:
    """Return (questions, ids); each line is {"question": ..., "id"?: ...}."""
    p = Path(path)
    if not p.is_file():
        raise RunError(f"input file not found: {path}")
    questions, ids = [], []
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RunError(f"{path}:{n}: not valid JSON ({exc.msg}); write one JSON object per line") from None
        if not isinstance(row, dict) or not isinstance(row.get("question"), str) or not row["question"].strip():
            raise RunError(f"{path}:{n}: each line needs a non-empty string field 'question'")
        questions.append(row["question"])
        ids.append(row.get("id", len(ids)))
    if not questions:
        raise RunError(f"{path}: no questions in the file; add lines like {{\"question\": \"...\"}}")
    return questions, ids
