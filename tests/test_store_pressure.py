"""`latentray run` on its own local Ray with a deliberately small object store (the least
Ray allows) and 1,000 problems all in flight: objects spill to disk and the run completes
with every answer; the input file's unreadable lines fail alone, each with its line."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.engine.run import run_spec
from topologies import build_plan, load_spec
from topologies.spec import MIN_OBJECT_STORE_BYTES

pytestmark = pytest.mark.ray

ROLE = "You are one of a team of careful solvers; read the team's memory and think. " * 2 + "Problem: {question}"
N = 1000


def write_spec(path: Path) -> Path:
    agent = {"model": "m", "role": ROLE, "latent_steps": 1}
    spec = {"version": 1, "name": "pressure", "models": {"m": {"ref": "tiny:qwen3-64"}},
            "agents": {"planner": agent, "critic": agent, "judger": {**agent, "output": "text", "max_new_tokens": 1}},
            "topology": {"type": "chain", "order": ["planner", "critic", "judger"], "memory": "accumulate"},
            "run": {"batch_size": 40, "max_in_flight": "all"},
            "limits": {"object_store_bytes": MIN_OBJECT_STORE_BYTES, "max_question_chars": 2000}}
    path.write_text(json.dumps(spec))  # JSON is YAML
    return path


def write_questions(path: Path) -> list:
    good = [f"What is {i} + {i}? Show the sum of the two numbers." for i in range(N)]
    with open(path, "wb") as f:
        for i, q in enumerate(good):
            f.write((json.dumps({"question": q, "id": f"q{i}"}) + "\n").encode())
        f.write(b'{"question": "caf\xe9 au lait?"}\n')  # Latin-1, not UTF-8
        f.write(b"not json at all\n")
        f.write((json.dumps({"question": "x" * 3000}) + "\n").encode())
        f.write(b'{"question": "   "}\n')
    return good


def test_small_store_spills_and_the_run_completes(tmp_path, ray_session):
    spec_path, out = write_spec(tmp_path / "spec.yaml"), tmp_path / "out"
    good = write_questions(tmp_path / "q.jsonl")
    proc = subprocess.run([sys.executable, "-m", "runtime.cli", "run", str(spec_path), "-i", str(tmp_path / "q.jsonl"),
                           "-o", str(out), "--quiet"], capture_output=True, text=True, timeout=600,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 1, proc.stderr[-2000:]  # some problems failed; the others were answered
    assert "4 of 1004 problems failed" in proc.stderr and "Traceback" not in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["spilled_bytes"] > 0  # the store was too small for what was in flight
    assert summary["peak_object_store_bytes"] <= MIN_OBJECT_STORE_BYTES
    assert summary["message_bytes"] > 2 * MIN_OBJECT_STORE_BYTES and summary["problems_failed"] == 4
    rows = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    assert len(rows) == N + 4 and [r["id"] for r in rows[:N]] == [f"q{i}" for i in range(N)]
    failed = {r["id"]: r["error"] for r in rows if r["answer"] is None}
    assert list(failed) == [1000, 1001, 1002, 1003]
    where = str(tmp_path / "q.jsonl")
    assert failed[1000] == f"{where}:1001: not UTF-8 (byte 0xe9 at offset 17); save the file as UTF-8"
    assert failed[1001].startswith(f"{where}:1002: not valid JSON")
    assert "3000 characters, more than limits.max_question_chars = 2000" in failed[1002]
    assert "empty" in failed[1003]
    # what spilled came back intact: the answers equal a run on the session's roomy store
    spec = load_spec(spec_path)
    roomy = spec.model_copy(update={"limits": spec.limits.model_copy(update={"object_store_bytes": None})})
    reference = run_spec(roomy, build_plan(roomy), good[:80], run_name="roomy")
    assert [r["answer"] for r in rows[:80]] == reference.answers
