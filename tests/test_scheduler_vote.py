"""The scheduler watches every step of a unit, and a majority vote compares what answers
commit to.

The stand-in actors below answer instantly and never touch a model: what is under test is
the scheduler (runtime/engine/scheduler.py), run on a real Ray against a real mesh plan.
Before, only a unit's last step was waited on, so a hung earlier voter blocked a
`ray.get` with no timeout: neither the hang detector nor limits.run_timeout_s fired."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from latentray.runtime.engine.scheduler import run_plan
from latentray.runtime.engine.steps import compile_steps
from latentray.runtime.engine.vote import majority, vote_key
from latentray.topologies import build_plan, load_spec
from latentray.topologies.spec import LimitsSpec

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("texts,winner", [
    (["I get 41.", "The answer is 42.", "So it is 42"], "The answer is 42."),
    (["Paris", "It is Lyon.", "paris."], "Paris"),
    (["A", "The answer is B", "b"], "The answer is B"),
    (["1,000 apples", "I count 1000.", "999"], "1,000 apples"),
    (["x", "y", "z"], "x"),  # no majority: the earliest agent's
])
def test_the_vote_counts_what_each_answer_commits_to(texts, winner):
    assert majority(texts) == winner


def test_vote_keys():
    assert vote_key("The answer is 42.") == vote_key("42") == vote_key("so we get 42.0") == "42"
    assert vote_key("Reasoning...\nC") == vote_key("The answer is (C)") == "c"
    assert vote_key("  Blue whale.  ") == vote_key("blue whale") == "blue whale"


def _stand_in_actor(ray):
    @ray.remote(max_restarts=2, max_task_retries=0)
    class StandIn:
        """Answers each step at once; the step named `hang_step` hangs on its first call
        (a marker file remembers it across the actor's restart)."""

        def __init__(self, hang_step: str, marker: str):
            self.hang_step, self.marker = hang_step, marker

        def ready(self):
            return {}

        def run_step(self, call, questions, *inbox):
            if call.step_id == self.hang_step and not Path(self.marker).exists():
                Path(self.marker).write_text("hung once")
                time.sleep(3600)  # where no step timeout reaches: inside one call
            n = len(questions)
            stats = {"step": call.step_id, "agent": call.agent, "batch": call.batch, "round": call.round,
                     "inbox": [], "tokens": [1] * n, "prompt_tokens": [0] * n, "latent_steps": 0, "pid": 0}
            if call.action == "text":
                return {"texts": [f"{call.agent}: the answer is {len(q)}" for q in questions], "tokens": [1] * n}, stats
            return (*[None] * len(call.outputs), stats)

    return StandIn


@pytest.mark.ray
def test_a_hung_earlier_voter_is_found_and_its_unit_runs_again(ray_session, tmp_path):
    spec = load_spec(ROOT / "topologies/examples/mesh_vote.yaml")
    plan = build_plan(spec)
    assert plan.answer_mode == "majority" and plan.answer_steps[0] == "vote/a"
    limits = LimitsSpec(step_timeout_s=0.2, retries=2)
    steps = compile_steps(plan, limits=limits)
    StandIn = _stand_in_actor(ray_session)
    handles = {a: StandIn.remote("vote/a" if a == "a" else "", str(tmp_path / "hung")) for a in plan.agents}
    ray_session.get([h.ready.remote() for h in handles.values()])  # started, as the session starts them
    questions = ["q1", "q22", "q333"]
    outcome: list = []
    worker = threading.Thread(target=lambda: outcome.extend(
        run_plan(plan, handles, questions, 1, steps=steps, limits=limits, max_in_flight=None)), daemon=True)
    worker.start()
    worker.join(120)  # the old scheduler never returns here
    try:
        assert not worker.is_alive(), "the run hangs on an earlier voter"
        answered = {i: a for d in outcome for i, a in zip(d.indices, d.answers)}
        assert sorted(answered) == [0, 1, 2] and not any(d.failed for d in outcome)
        assert answered[1] == "a: the answer is 3"  # all three agree on 3: the earliest agent's text
        assert sum(d.retries for d in outcome) >= 1  # the hung voter's unit ran again, counted
    finally:
        for h in handles.values():
            ray_session.kill(h, no_restart=True)
