"""Write a run's outputs: answers.jsonl (one line per question), summary.json, trace.parquet.

Files are written to a temporary name and renamed, so a crash never leaves half a file.
"""
from __future__ import annotations

import json
import os
from pathlib import Path


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def write_answers(out_dir: Path, questions: list, answers: list, tokens: list, ids=None) -> Path:
    path = out_dir / "answers.jsonl"

    def write(tmp):
        with open(tmp, "w") as f:
            for i, (q, a, t) in enumerate(zip(questions, answers, tokens)):
                row = {"id": ids[i] if ids else i, "question": q, "answer": a, "tokens": t}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")

    _atomic_write(path, write)
    return path


def write_summary(out_dir: Path, summary: dict) -> Path:
    path = out_dir / "summary.json"
    _atomic_write(path, lambda tmp: tmp.write_text(json.dumps(summary, indent=2) + "\n"))
    return path


def write_trace(out_dir: Path, rows: list) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = out_dir / "trace.parquet"
    columns = ["run", "batch", "first_problem", "src", "dst", "round", "kind", "bytes", "latency_s"]
    table = pa.table({c: [r.get(c) for r in rows] for c in columns})
    _atomic_write(path, lambda tmp: pq.write_table(table, tmp))
    return path
