"""A corpus of bad specs: each file's first line says the exact error it must give.

Every error names the file, the field path and the fix, and comes before any actor starts
(load + plan only; nothing here loads a model or touches Ray).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from latentray.topologies.errors import SpecError
from latentray.topologies.loader import load_plan

CORPUS = sorted((Path(__file__).parent / "bad_specs").glob("*.yaml"))


def expected_error(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# error: "), f"{path.name} must start with '# error: <message>'"
    return first.removeprefix("# error: ")


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 20


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_bad_spec_gives_its_exact_error(path):
    with pytest.raises(SpecError) as info:
        load_plan(path)
    assert str(info.value) == f"{path}: {expected_error(path)}"
    assert info.value.file == str(path)
    assert info.value.fix, "every error says how to fix it"


def test_missing_file():
    with pytest.raises(SpecError, match=r"^nowhere\.yaml: spec file not found \(fix: check the path\)$"):
        load_plan("nowhere.yaml")
