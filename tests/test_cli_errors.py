"""Bad input gives one clear line on stderr and exit code 2, before any actor starts."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from latentray.runtime.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "topologies" / "examples" / "latent_chain.yaml"


def _spec_with(tmp_path, **changes) -> str:
    spec = yaml.safe_load(EXAMPLE.read_text())
    for dotted, value in changes.items():
        node = spec
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def _run(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    return code, err


def test_missing_spec_file(capsys, tmp_path):
    code, err = _run(capsys, "run", str(tmp_path / "nope.yaml"), "-q", "hi")
    assert code == 2
    assert err == f"error: {tmp_path / 'nope.yaml'}: spec file not found (fix: check the path)"


def test_unknown_model_preset(capsys, tmp_path):
    spec = _spec_with(tmp_path, models__base__ref="tiny:qwen9-1")
    code, err = _run(capsys, "run", spec, "-q", "hi")
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: models.base.ref: unknown tiny model preset 'qwen9-1'")
    assert "tiny:qwen3-64" in err


def test_empty_question_list(capsys, tmp_path):
    empty = tmp_path / "q.jsonl"
    empty.write_text("\n")
    code, err = _run(capsys, "run", str(EXAMPLE), "--input", str(empty))
    assert code == 2
    assert err == f"error: {empty}: no questions in the file; add lines like {{\"question\": \"...\"}}"


def test_no_questions_at_all(capsys):
    code, err = _run(capsys, "run", str(EXAMPLE))
    assert code == 2 and "no questions to run" in err


def test_a_file_without_one_readable_line_is_refused_naming_the_line(capsys, tmp_path):
    """(A bad line among good ones fails alone: tests/test_bad_questions.py, test_store_pressure.py.)"""
    bad = tmp_path / "q.jsonl"
    bad.write_text("{\"q\": 1}\n" + json.dumps({"question": 3}) + "\n")
    code, err = _run(capsys, "run", str(EXAMPLE), "--input", str(bad))
    assert code == 2 and err == (f"error: {bad}: no line is a question ({bad}:1: each line needs a string field "
                                 "'question'); write one JSON object per line with a 'question' field")


def test_unknown_spec_key_names_field(capsys, tmp_path):
    spec = _spec_with(tmp_path, agents__planner__latnet_steps=3)
    code, err = _run(capsys, "run", spec, "-q", "hi")
    assert code == 2
    assert err == f"error: {spec}: agents.planner.latnet_steps: unknown key (fix: remove it or check its spelling)"


# The console script beside this interpreter (the venv's bin/, active or not).
SCRIPT = shutil.which("latentray", path=str(Path(sys.executable).parent)) or shutil.which("latentray")


@pytest.mark.skipif(SCRIPT is None, reason="console script not installed")
def test_console_script_exit_code_and_single_line(tmp_path):
    proc = subprocess.run([SCRIPT, "run", str(tmp_path / "missing.yaml"), "-q", "x"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
