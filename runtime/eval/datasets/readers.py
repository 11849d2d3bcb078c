"""Read the rows of a local data file by its extension, each with where it came from
(`file:line` for text formats, `file row n` for columnar ones) for error messages."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from latentray.runtime.eval.problem import DataError

FORMATS = (".jsonl", ".json", ".csv", ".parquet", ".arrow", ".feather")


def read_rows(path: Path) -> list:
    """[(where, row dict)] in file order; DataError for anything unreadable."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise DataError(f"{path}: unsupported file type {suffix or '(none)'!r}; use one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise DataError(f"{path}: file not found; check the path")
    reader = {".jsonl": _jsonl, ".json": _json, ".csv": _csv}.get(suffix)
    rows = reader(path, _text(path)) if reader else _columnar(path, suffix)
    if not rows:
        raise DataError(f"{path}: no rows in the file; add one record per problem")
    return rows


def _text(path: Path) -> str:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
                        "save the file as UTF-8") from None
    if not text.strip():
        raise DataError(f"{path}: the file is empty; add one record per problem")
    return text


def _jsonl(path: Path, text: str) -> list:
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{n}: not valid JSON ({exc.msg}); write one JSON object per line") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{n}: a {type(row).__name__}, not a JSON object; write one object per line")
        rows.append((f"{path}:{n}", row))
    return rows


def _json(path: Path, text: str) -> list:
    """A list of objects, or an object holding exactly one such list (e.g. {"data": [...]})."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        data = lists[0] if len(lists) == 1 else data
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError(f"{path}: expected a JSON list of objects (one per problem); "
                        "for one object per line use a .jsonl file")
    return [(f"{path} item {n}", row) for n, row in enumerate(data, 1)]


def _csv(path: Path, text: str) -> list:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = []
    try:
        for row in reader:
            if None in row:
                raise DataError(f"{path}:{reader.line_num}: more fields than the header has; "
                                "quote fields that contain commas")
            rows.append((f"{path}:{reader.line_num}", row))
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: not valid CSV ({exc})") from None
    return rows


def _columnar(path: Path, suffix: str) -> list:
    import pyarrow as pa

    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq
            table = pq.read_table(path)
        elif suffix == ".feather":
            import pyarrow.feather as feather
            table = feather.read_table(path)
        else:
            from latentray.runtime.eval.datasets.package_files import read_arrow_rows
            return [(f"{path} row {n}", row) for n, row in enumerate(read_arrow_rows(path), 1)]
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: cannot read it as {suffix[1:]} ({exc}); check the file's type") from None
    return [(f"{path} row {n}", row) for n, row in enumerate(table.to_pylist(), 1)]
