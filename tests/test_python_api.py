"""The Python API (latentray/api.py, docs/python.md): latentray.run answers as the same
steps called in one process; a Session keeps its actors for every call, sync and async;
evaluate is `latentray eval`; bad input is a typed error naming the field. The documented
examples run in tests/test_documented_examples.py."""
import asyncio
from pathlib import Path

import pytest

import latentray
from helpers import answers_in_one_process

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ["What is 2 plus 3?", "Name a color.", "What is 7 times 6?"]
SPEC = {
    "version": 1, "name": "api",
    "models": {"m": {"ref": "tiny:qwen3-64"}},
    "agents": {"thinker": {"model": "m", "actor": "team", "latent_steps": 2, "role": "Think.\nProblem: {question}"},
               "answerer": {"model": "m", "actor": "team", "output": "text", "max_new_tokens": 6,
                            "role": "Answer.\nProblem: {question}"}},
    "topology": {"type": "chain", "order": ["thinker", "answerer"]},
}


@pytest.fixture(scope="module")
def reference():
    return answers_in_one_process(latentray.load_spec(SPEC, batch_size=2), QUESTIONS)


def test_run_answers_as_one_process(ray_session, reference):
    result = latentray.run(SPEC, QUESTIONS, batch_size=2)
    assert (result.answers, result.tokens) == reference and not result.failed
    assert {(r["src"], r["dst"], r["kind"]) for r in result.trace} == {("thinker", "answerer", "kv")}
    assert len(result.trace) == 2 and all(r["bytes"] > 0 for r in result.trace)  # one message per batch
    (one,) = latentray.run(SPEC, QUESTIONS[1], batch_size=2).answers  # a string is one question
    assert one == reference[0][1]


def test_a_session_keeps_its_actors_for_every_call(ray_session, reference):
    spec = latentray.load_spec(SPEC, batch_size=2)
    with latentray.Session(spec) as session:
        first, second = session.run(QUESTIONS[:2]), session.run(QUESTIONS[2:])
        assert session._session.started
    assert first.answers + second.answers == reference[0]
    assert {s["pid"] for s in first.steps} == {s["pid"] for s in second.steps}
    assert not session._session.started  # closed: its actors stopped (or parked)


def test_async_calls_overlap_on_one_session(ray_session, reference):
    async def main():
        async with latentray.Session(SPEC, batch_size=2) as session:
            return await asyncio.gather(*(session.arun([q]) for q in QUESTIONS))

    results = asyncio.run(main())
    assert [r.answers[0] for r in results] == reference[0]
    assert [r.tokens[0] for r in results] == reference[1]


def test_evaluate_is_latentray_eval(ray_session, tmp_path):
    data = tmp_path / "sums.jsonl"
    data.write_text("\n".join(f'{{"prompt": "What is {i} + {i}?", "target": "{2 * i}"}}' for i in range(3)) + "\n")
    figures = latentray.evaluate(SPEC, str(data), tmp_path / "out", methods=["single"],
                                 fields={"question": "prompt", "answer": "target"})
    assert list(figures) == ["single"] and figures["single"]["problems"] == 3
    assert 0 <= figures["single"]["accuracy"] <= 1 and (tmp_path / "out" / "results" / "single.parquet").is_file()


def test_bad_input_is_a_typed_error_naming_the_field(tmp_path):
    with pytest.raises(latentray.SpecError, match="unknown override.*batchsize"):
        latentray.load_spec(SPEC, batchsize=2)
    with pytest.raises(latentray.SpecError, match="batch_size: must be a whole number >= 1, got 0"):
        latentray.load_spec(SPEC, batch_size=0)
    with pytest.raises(latentray.SpecError, match="method: unknown method 'fast'"):
        latentray.load_spec(SPEC, method="fast")
    with pytest.raises(latentray.SpecError, match="max_in_flight"):
        latentray.load_spec(SPEC, max_in_flight=0)
    with pytest.raises(latentray.SpecError, match="spec file not found"):
        latentray.load_spec(tmp_path / "missing.yaml")
    with pytest.raises(latentray.SpecError, match="not a int"):
        latentray.load_spec(7)
    with pytest.raises(latentray.RunError, match="question 1 is a int"):
        latentray.run(SPEC, ["fine", 3])
    assert issubclass(latentray.DataError, latentray.LatentrayError)


def test_a_session_the_local_ray_cannot_hold_beside_another_is_refused(ray_session, monkeypatch):
    """Nothing adds room to a Ray this process started: actors that its free room cannot hold
    would wait forever, so the second session is refused, naming the fix."""
    from latentray.runtime.engine import actors

    monkeypatch.setattr(actors, "ROOM_WAIT_S", 0.5)
    total = ray_session.cluster_resources()["CPU"]
    big = {**SPEC, "agents": {name: {**agent, "resources": {"num_cpus": total // 2 + 1}}
                              for name, agent in SPEC["agents"].items()}}
    with latentray.Session(big) as first:
        first.start()
        with pytest.raises(latentray.RunError, match=r"need \d+ CPU \(free: \d+\).*close them first"):
            latentray.Session(big).start()
        assert first.run(QUESTIONS[:1]).answers  # the first one still serves

