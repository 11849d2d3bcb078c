"""`hf:<dataset id>[:config]` sources through the optional `datasets` package; rows go
through the same field mapping as local files. Downloads need network access and the
Hugging Face cache; nothing else in latentray eval does."""
from __future__ import annotations

import importlib.util

from latentray.runtime.eval.problem import DataError
from latentray.runtime.eval.datasets.local_file import rows_to_problems

PIP = "pip install datasets"
DEFAULT_SPLIT = "test"


def parse_hf_source(source: str) -> tuple:
    """"hf:openai/gsm8k:main" -> ("openai/gsm8k", "main"); config may be left out."""
    body = source[len("hf:"):] if source.startswith("hf:") else source
    name, _, config = body.partition(":")
    if not name.strip() or ":" in config:
        raise DataError(f"data source {source!r}: write hf:<dataset id>[:config], e.g. hf:openai/gsm8k:main")
    return name.strip(), (config.strip() or None)


def load_hf(source: str, *, split: str | None = None, mapping: dict | None = None, task: str | None = None) -> list:
    name, config = parse_hf_source(source)
    if importlib.util.find_spec("datasets") is None:
        raise DataError(f"data source {source!r} needs the Hugging Face `datasets` package; install it with `{PIP}`")
    import datasets

    split = split or DEFAULT_SPLIT
    try:
        rows = datasets.load_dataset(name, config, split=split)
    except Exception as exc:  # the library raises many types (missing config, split, network...)
        raise DataError(f"data source {source!r} split {split!r}: {type(exc).__name__}: {exc}") from None
    where = f"hf:{name}" + (f":{config}" if config else "") + f"[{split}]"
    rows = [(f"{where} row {n}", dict(row)) for n, row in enumerate(rows, 1)]
    if not rows:
        raise DataError(f"data source {source!r} split {split!r} has no rows")
    return rows_to_problems(rows, where, mapping=mapping, task=task)
