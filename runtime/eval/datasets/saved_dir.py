"""A data set saved with Hugging Face `datasets`' save_to_disk: a folder of Arrow files,
read here with pyarrow, so `latentray eval --dataset DIR` needs no `datasets` package.

Two layouts: one split (state.json naming its Arrow files, beside dataset_info.json), or a
DatasetDict (dataset_dict.json naming the splits, each a folder of the first layout). Rows
go through the same field mapping as local files."""
from __future__ import annotations

import json
from pathlib import Path

from latentray.runtime.eval.datasets.huggingface import DEFAULT_SPLIT
from latentray.runtime.eval.datasets.local_file import rows_to_problems
from latentray.runtime.eval.datasets.package_files import read_arrow_rows
from latentray.runtime.eval.problem import DataError


def is_saved_dataset(path: Path) -> bool:
    return (path / "state.json").is_file() or (path / "dataset_dict.json").is_file()


def load_saved_dataset(path: str, *, split: str | None = None, mapping: dict | None = None,
                       task: str | None = None) -> list:
    root = Path(path)
    folder, split = _split_folder(root, split)
    state = _read_json(folder / "state.json")
    files = [folder / f["filename"] for f in state.get("_data_files", [])]
    missing = [str(f) for f in files if not f.is_file()]
    if missing or not files:
        raise DataError(f"{folder}: its state.json names Arrow files that are not there "
                        f"({', '.join(missing) or 'none'}); save the data set again with save_to_disk")
    where = f"{root}[{split}]" if split else str(root)
    rows = [r for f in files for r in read_arrow_rows(f)]
    if not rows:
        raise DataError(f"{where} has no rows")
    return rows_to_problems([(f"{where} row {n}", row) for n, row in enumerate(rows, 1)], where,
                            mapping=mapping, task=task)


def _split_folder(root: Path, split: str | None) -> tuple:
    """(folder of the split's files, the split's name or None where the folder names none)."""
    if (root / "dataset_dict.json").is_file():
        splits = list(_read_json(root / "dataset_dict.json").get("splits", []))
        if split is None:
            split = DEFAULT_SPLIT if DEFAULT_SPLIT in splits else splits[0] if len(splits) == 1 else None
            if split is None:
                raise DataError(f"{root} holds the splits {', '.join(splits)}; choose one with --split")
        if split not in splits:
            raise DataError(f"{root} has no split {split!r}; its splits are {', '.join(splits) or 'none'}")
        return root / split, split
    saved = _read_json(root / "state.json").get("_split")
    if split is not None and saved is not None and split != saved:
        raise DataError(f"{root} holds the {saved!r} split only, not {split!r}; leave --split out or use "
                        f"--split {saved}")
    return root, saved


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable save_to_disk file ({exc}); save the data set again") from None
