"""An evaluation directory: results/<method>.parquet (one scored row per problem) and
results/<method>.json (the method's run summary), each written to a temporary name and
renamed, so a method that finished is kept whatever happens to the next one. While a
method runs, its answers stream into runs/<method>/ (runtime/results.py), so a rerun of
the same command resumes an interrupted method where it stopped. Re-running a method
replaces its part; all parts read together as one table."""
from __future__ import annotations

import json
from pathlib import Path

from latentray.runtime.engine.results import atomic_write

from latentray.runtime.eval.problem import DataError

COLUMNS = ["dataset", "spec", "method", "id", "task", "question", "context", "gold", "answer", "extracted",
           "correct", "detail", "prompt_tokens", "decoded_tokens", "tokens_by_agent", "latent_steps", "seconds",
           "seconds_by_agent", "message_bytes", "batch", "options", "cut_off"]


def _schema():
    import pyarrow as pa

    s, i, f = pa.string(), pa.int64(), pa.float64()
    types = {"correct": pa.bool_(), "cut_off": pa.bool_(), "prompt_tokens": i, "decoded_tokens": i,
             "latent_steps": i, "seconds": f, "message_bytes": i, "batch": i, "options": i, "tokens_by_agent": pa.map_(s, i), "seconds_by_agent": pa.map_(s, f)}
    return pa.schema([(c, types.get(c, s)) for c in COLUMNS])


def write_method(out_dir: Path, method: str, rows: list, summary: dict, keep_summary: bool = False) -> Path:
    """keep_summary: leave an existing <method>.json (a rerun that ran nothing keeps the
    timings of the run that did)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = Path(out_dir) / "results"
    parts.mkdir(parents=True, exist_ok=True)
    data = {c: [(list(r[c].items()) if isinstance(r[c], dict) else r[c]) for r in rows] for c in COLUMNS}
    table = pa.table(data, schema=_schema())
    path = parts / f"{method}.parquet"
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))
    meta = parts / f"{method}.json"
    if keep_summary and meta.is_file():
        return path
    atomic_write(meta, lambda tmp: tmp.write_text(json.dumps(summary, indent=2) + "\n"))
    return path


def read_results(out_dir: Path) -> tuple:
    """(rows, {method: summary}) of every method part in the directory."""
    import pyarrow.parquet as pq

    parts = Path(out_dir) / "results"
    files = sorted(parts.glob("*.parquet")) if parts.is_dir() else []
    if not files:
        raise DataError(f"{out_dir}: no evaluation results (results/*.parquet); run `latentray eval ... "
                        f"--output {out_dir}` first")
    rows, summaries = [], {}
    for f in files:
        for r in pq.read_table(f).to_pylist():
            r["tokens_by_agent"] = dict(r["tokens_by_agent"] or [])
            r["seconds_by_agent"] = dict(r["seconds_by_agent"] or [])
            rows.append(r)
        meta = f.with_suffix(".json")
        if meta.is_file():
            summaries[f.stem] = json.loads(meta.read_text())
    order = {m: i for i, m in enumerate(("single", "text", "latent"))}
    rows.sort(key=lambda r: (order.get(r["method"], 9), r["method"]))
    return rows, summaries
