"""Problems from any local JSONL / JSON / CSV / Parquet / Arrow file (and Hugging Face
rows), through a field mapping {field: column}. Columns may be dotted paths into nested
JSON (`doc.question`). Defaults: question <- "question", answer <- "answer", id <- "id"
(else the row's position, from 0), and choices / labels / context / test / entry_point
<- the column of that name when the file has it."""
from __future__ import annotations

import re
from pathlib import Path

from latentray.runtime.eval.problem import TASKS, DataError, Problem
from latentray.runtime.eval.datasets.arc import parse_choices
from latentray.runtime.eval.datasets.readers import read_rows

FIELDS = ("question", "answer", "choices", "id", "context", "labels", "test", "entry_point")
_NUMBER = re.compile(r"[-\u2212]?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?|[-\u2212]?\.\d+")


def parse_field_mapping(items: list) -> dict:
    """CLI items like ["question=prompt", "answer=doc.gold"] -> {"question": "prompt", ...}."""
    mapping = {}
    for item in items or []:
        key, sep, column = str(item).partition("=")
        key, column = key.strip(), column.strip()
        if not sep or not key or not column:
            raise DataError(f"--field {item!r}: write FIELD=COLUMN, e.g. --field question=prompt")
        if key not in FIELDS:
            raise DataError(f"--field {item!r}: unknown field {key!r}; fields are {', '.join(FIELDS)}")
        if key in mapping:
            raise DataError(f"--field {item!r}: field {key!r} is mapped twice; keep one")
        mapping[key] = column
    return mapping


def load_local_file(path: str | Path, *, mapping: dict | None = None, task: str | None = None) -> list:
    return rows_to_problems(read_rows(Path(path)), str(path), mapping=mapping, task=task)


def rows_to_problems(rows: list, source: str, *, mapping: dict | None = None, task: str | None = None) -> list:
    """rows: [(where, dict)]. The task is given, or inferred once for the whole file:
    options mapped or present -> choice, every gold a number -> math, else exact."""
    mapping = dict(mapping or {})
    unknown = sorted(set(mapping) - set(FIELDS))
    if unknown:
        raise DataError(f"{source}: unknown field(s) {', '.join(unknown)} in the mapping; fields are {', '.join(FIELDS)}")
    if task is not None and task not in TASKS:
        raise DataError(f"{source}: unknown task {task!r}; use one of {', '.join(TASKS)}")
    first = rows[0][1]
    for key in FIELDS:  # optional defaults: only when the first row has the column
        if key not in mapping and (key in ("question", "answer") or _has(first, key)):
            mapping[key] = key
    if task is None:
        task = "choice" if "choices" in mapping else "math" if _all_numbers(rows, mapping) else "exact"
    if task == "choice" and "choices" not in mapping:
        raise DataError(f"{source}: task 'choice' needs the options; map them with --field choices=COLUMN "
                        f"(columns: {', '.join(_columns(first))})")
    if task == "code":
        _require(first, rows[0][0], mapping, ("test", "entry_point"), source)
    problems, seen = [], {}
    for n, (where, row) in enumerate(rows):
        p = _problem(row, n, where, mapping, task, source)
        if p.id in seen:
            raise DataError(f"{where}: id {p.id!r} repeats {seen[p.id]}; ids must be unique (map another --field id=COLUMN)")
        seen[p.id] = where
        problems.append(p)
    return problems


def _problem(row: dict, n: int, where: str, mapping: dict, task: str, source: str) -> Problem:
    get = lambda key, default=None: _get(row, mapping[key], where, key, source) if key in mapping else default  # noqa: E731
    question = get("question")
    if question is None or not str(question).strip():
        raise DataError(f"{where}: empty question in column {mapping['question']!r}; every row needs one")
    # Code problems are checked by their tests; a reference solution is optional.
    answer = "" if task == "code" and not _has(row, mapping["answer"]) else get("answer")
    if isinstance(answer, (list, dict)):
        raise DataError(f"{where}: the answer column {mapping['answer']!r} holds a {type(answer).__name__}; "
                        "map a column with one answer (--field answer=COLUMN)")
    meta = {k: get(k) for k in ("test", "entry_point") if k in mapping}
    if task == "code":
        meta["prompt"] = str(question)
    choices, labels, gold = (), (), "" if answer is None else str(answer)
    if task == "choice":
        choices, labels = _options(get("choices"), get("labels"), where)
        gold = _gold_label(answer, choices, labels, where)
    try:
        return Problem(id=str(get("id", n)), question=str(question), gold=gold, task=task, choices=choices,
                       labels=labels, context=str(get("context", "") or ""), meta=meta)
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from None


def _options(value, labels, where: str) -> tuple:
    """Option texts and labels from a list, an HF-style {"text", "label"} dict, or a
    string holding either (JSON, or a Python literal: CSV cells)."""
    if isinstance(value, str) and value.strip()[:1] == "[":
        value = _literal_list(value, where, "choices")
    if isinstance(value, (str, dict)):
        texts, given = parse_choices(value, where)
    elif isinstance(value, (list, tuple)):
        texts, given = tuple(value), ()
    else:
        raise DataError(f"{where}: choices must be a list of option texts, got {type(value).__name__}")
    if isinstance(labels, str):
        labels = _literal_list(labels, where, "labels") if labels.strip()[:1] == "[" else labels.split(",")
    return tuple(str(t) for t in texts), tuple(str(x).strip() for x in (labels or given))


def _gold_label(answer, choices: tuple, labels: tuple, where: str) -> str:
    """The gold as a label: a label itself, an option's text, or a 0-based integer index."""
    labels = labels or tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ"[: len(choices)])
    text = str(answer).strip()
    for label in labels:
        if text.upper() == label.upper():
            return label
    for label, option in zip(labels, choices):
        if text.lower() == str(option).strip().lower():
            return label
    if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(labels):
        return labels[answer]
    raise DataError(f"{where}: answer {text!r} is neither a label ({', '.join(labels)}) nor an option's text; "
                    "the answer column must name the correct option")


def _literal_list(text: str, where: str, key: str) -> list:
    import ast
    import json
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise DataError(f"{where}: {key} {text[:60]!r} is not a JSON list") from None


def _get(row: dict, column: str, where: str, key: str, source: str):
    if column in row:
        return row[column]
    value = row
    for part in column.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise DataError(f"{where}: no column {column!r} for the field {key!r} in {source}; columns are "
                            f"{', '.join(_columns(row))}; map the right one with --field {key}=COLUMN")
    return value


def _has(row: dict, column: str) -> bool:
    try:
        _get(row, column, "", "", "")
        return bool(column)
    except DataError:
        return False


def _require(row, where, mapping, keys, source):
    for key in keys:
        if key not in mapping:
            raise DataError(f"{where}: task 'code' needs the field {key!r}; map it with --field {key}=COLUMN "
                            f"(columns: {', '.join(_columns(row))})")


def _columns(row: dict, prefix: str = "", depth: int = 0) -> list:
    """Column names, nested JSON objects as dotted paths (two levels deep)."""
    out = []
    for key, value in row.items():
        out.append(prefix + str(key))
        if isinstance(value, dict) and depth < 1:
            out.extend(_columns(value, f"{prefix}{key}.", depth + 1))
    return out


def _all_numbers(rows: list, mapping: dict) -> bool:
    """Every row's answer is one number ("18", "1,000", "-2.5", "3/4")."""
    for _, row in rows:
        if not _has(row, mapping["answer"]):
            return False
        value = _get(row, mapping["answer"], "", "", "")
        if isinstance(value, bool) or not _NUMBER.fullmatch(str(value).strip()):
            return False
    return True
