"""The streaming output directory: atomic parts, exactly-once resume, refusal of another run."""
import json

import pyarrow.dataset as ds
import pytest

from latentray.runtime.engine.results import ResumeError, RunOutput
from latentray.topologies.spec import GraphSpec

SPEC = {"version": 1, "name": "store", "models": {"m": {"ref": "tiny:qwen3-64"}},
        "agents": {"a": {"model": "m", "role": "Plan {question}", "latent_steps": 2},
                   "b": {"model": "m", "role": "Answer {question}", "output": "text"}},
        "topology": {"type": "chain", "order": ["a", "b"]}}
QUESTIONS = ["one?", "two?", "three?", "four?", "five?"]
IDS = ["q1", "q2", "q3", "q4", "q5"]


def spec(**changes):
    data = json.loads(json.dumps(SPEC))
    for path, value in changes.items():
        node = data
        *parents, last = path.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return GraphSpec.model_validate(data)


def trace(n):
    return [{"run": "r", "batch": 0, "src": "a", "dst": "b", "round": 0, "kind": "kv", "bytes": 100 + i,
             "latency_s": 0.001} for i in range(n)]


def test_parts_read_as_one_dataset_and_resume_skips_finished(tmp_path):
    with RunOutput(tmp_path, spec(), QUESTIONS, IDS) as out:
        assert out.todo() == [0, 1, 2, 3, 4]
        out.write_batch([0, 1], ["A1", "A2"], [3, 4], trace(1), "r", 0)
        out.write_batch([3], ["A4"], [5], trace(2), "r", 1, retries=1)
    assert ds.dataset(tmp_path / "answers").to_table().num_rows == 3
    assert ds.dataset(tmp_path / "trace").to_table().num_rows == 3
    with RunOutput(tmp_path, spec(), QUESTIONS, IDS) as again:
        assert again.done == {0, 1, 3} and again.todo() == [2, 4]
        again.write_batch([2, 4], ["A3", "A5"], [1, 2], trace(1), "r2", 0)
        again.finish({"ok": True})
    lines = [json.loads(x) for x in (tmp_path / "answers.jsonl").read_text().splitlines()]
    assert [x["id"] for x in lines] == IDS and [x["answer"] for x in lines] == ["A1", "A2", "A3", "A4", "A5"]
    assert [x["retries"] for x in lines] == [0, 0, 0, 1, 0]
    rows = ds.dataset(tmp_path / "trace").to_table().to_pylist()
    assert sorted(p for r in rows for p in set(r["problems"])) == [0, 1, 2, 3, 3, 4]  # 2 rows for batch [3]
    assert json.loads((tmp_path / "summary.json").read_text()) == {"ok": True}


def test_a_killed_batch_leaves_nothing_half_done(tmp_path):
    with RunOutput(tmp_path, spec(), QUESTIONS, IDS) as out:
        out.write_batch([0], ["A1"], [1], trace(1), "r", 0)
    # what a SIGKILL can leave: a temporary file, and a trace part whose answers part never came
    (tmp_path / "answers" / ".part-x-000009.parquet.ab12.tmp").write_bytes(b"PAR1 half")
    (tmp_path / "trace" / "part-dead-000001.parquet").write_bytes(
        (tmp_path / "trace" / next(p.name for p in (tmp_path / "trace").glob("part-*"))).read_bytes())
    assert ds.dataset(tmp_path / "answers").to_table().num_rows == 1  # dot-files are not read
    with RunOutput(tmp_path, spec(), QUESTIONS, IDS) as again:
        assert again.done == {0}
        assert not list((tmp_path / "answers").glob(".*"))
        assert len(list((tmp_path / "trace").glob("part-*"))) == 1
        assert len(again.trace()) == 1


@pytest.mark.parametrize("changed, message", [
    (spec(agents__a__latent_steps=3), r"another spec \(agents\.a\.latent_steps: 2 -> 3\)"),
    (spec(run__method="text"), r"another spec \(run\.method: \"latent\" -> \"text\"\)"),
])
def test_another_spec_is_refused_naming_the_field(tmp_path, changed, message):
    RunOutput(tmp_path, spec(), QUESTIONS, IDS).open().close()
    with pytest.raises(ResumeError, match=message):
        RunOutput(tmp_path, changed, QUESTIONS, IDS).open()


def test_scheduling_fields_do_not_make_another_run(tmp_path):
    RunOutput(tmp_path, spec(), QUESTIONS, IDS).open().close()
    RunOutput(tmp_path, spec(run__batch_size=7, run__max_in_flight=2), QUESTIONS, IDS).open().close()


def test_raised_limits_resume_the_same_run(tmp_path):
    """A limit decides whether a problem may run, not its answer (a problem that failed on
    a limit runs again on resume), so following an error's advice to raise it resumes."""
    RunOutput(tmp_path, spec(), QUESTIONS, IDS).open().close()
    raised = spec(limits__max_prompt_tokens=32768, limits__step_timeout_s=3600.0, limits__retries=5,
                  limits__max_message_bytes=2**32)
    RunOutput(tmp_path, raised, QUESTIONS, IDS).open().close()


def test_other_questions_are_refused_naming_the_first_difference(tmp_path):
    RunOutput(tmp_path, spec(), QUESTIONS, IDS).open().close()
    with pytest.raises(ResumeError, match=r"question 2 \(id \"q3\"\) was \"three\?\", now \"THREE\?\""):
        RunOutput(tmp_path, spec(), QUESTIONS[:2] + ["THREE?"] + QUESTIONS[3:], IDS).open()
    with pytest.raises(ResumeError, match="5 questions then, 4 now"):
        RunOutput(tmp_path, spec(), QUESTIONS[:4], IDS[:4]).open()


def test_two_runs_cannot_write_one_directory(tmp_path):
    with RunOutput(tmp_path, spec(), QUESTIONS, IDS):
        with pytest.raises(ResumeError, match="another latentray run is writing"):
            RunOutput(tmp_path, spec(), QUESTIONS, IDS).open()
    RunOutput(tmp_path, spec(), QUESTIONS, IDS).open().close()  # free again once closed


def test_restart_discards_only_the_run_files_and_accepts_another_spec(tmp_path):
    with RunOutput(tmp_path, spec(), QUESTIONS, IDS) as out:
        out.write_batch([0], ["A1"], [1], trace(1), "r", 0)
        out.finish({"ok": True})
    (tmp_path / "notes.txt").write_text("mine")
    with RunOutput(tmp_path, spec(agents__a__latent_steps=5), QUESTIONS, IDS).open(restart=True) as again:
        assert again.done == set() and again.todo() == [0, 1, 2, 3, 4]
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "answers.jsonl").exists() and not (tmp_path / "summary.json").exists()
    assert json.loads((tmp_path / "run.json").read_text())["spec"]["agents"]["a"]["latent_steps"] == 5
