"""Kill the driver with SIGKILL mid-run, rerun with the same --output: every problem is
answered exactly once, with the answers an undisturbed run gives."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from latentray.topologies import load_spec

from helpers import answers_in_one_process

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]
N = 16
SPEC = """version: 1
name: resume
models:
  base: {ref: "tiny:qwen3-64"}
agents:
  planner: {model: base, role: "Plan: {question}", latent_steps: 2, actor: team}
  judger: {model: base, role: "Answer: {question}", output: text, max_new_tokens: 6, actor: team}
topology: {type: chain, order: [planner, judger], memory: accumulate}
channels: {kind: kv}
run: {batch_size: 1, max_in_flight: 1}
"""


def cli(address: str, *args, **kw):
    """`latentray ARGS` as a driver of its own, joined to the session's Ray at `address`:
    a driver killed there takes only its own actors with it."""
    env = {**os.environ, "RAY_ADDRESS": address}
    return subprocess.Popen([sys.executable, "-m", "latentray", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_sigkill_then_resume_answers_every_problem_exactly_once(tmp_path, ray_for_other_drivers):
    address = ray_for_other_drivers.get_runtime_context().gcs_address
    spec_path = tmp_path / "resume.yaml"
    spec_path.write_text(SPEC)
    questions = [f"What is {i} times 3?" for i in range(N)]
    inputs = tmp_path / "q.jsonl"
    inputs.write_text("".join(json.dumps({"id": f"p{i}", "question": q}) + "\n" for i, q in enumerate(questions)))
    out = tmp_path / "out"
    args = ["run", str(spec_path), "-i", str(inputs), "-o", str(out), "--quiet"]

    first = cli(address, *args)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list((out / "answers").glob("part-*.parquet"))) < 5:
        assert first.poll() is None, first.communicate()
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    finished = len(list((out / "answers").glob("part-*.parquet")))
    assert 5 <= finished < N, "the run must die mid-way"
    assert not (out / "answers.jsonl").exists()

    second = cli(address, *args)
    stdout, stderr = second.communicate(timeout=300)
    assert second.returncode == 0, stderr
    resumed = [line for line in stderr.splitlines() if "resuming" in line]
    assert resumed and f"of {N} problems already finished" in resumed[0]
    done_before = int(resumed[0].split("resuming ")[1].split(": ")[1].split(" of")[0])
    assert done_before >= finished  # every part on disk counted, none run again

    rows = ds.dataset(out / "answers").to_table().to_pylist()
    assert sorted(r["index"] for r in rows) == list(range(N))  # exactly once
    trace = ds.dataset(out / "trace").to_table().to_pylist()
    assert sorted(p for r in trace for p in r["problems"]) == list(range(N))  # one message per problem
    lines = [json.loads(x) for x in (out / "answers.jsonl").read_text().splitlines()]
    assert [x["id"] for x in lines] == [f"p{i}" for i in range(N)]

    # the same answers as one undisturbed run (its steps called in this process)
    answers, tokens = answers_in_one_process(load_spec(spec_path), questions)
    assert [x["answer"] for x in lines] == answers
    assert [x["tokens"] for x in lines] == tokens
    assert f"[p{N - 1}] Q: What is {N - 1} times 3?" in stdout
