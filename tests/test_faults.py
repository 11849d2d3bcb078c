"""Faults injected into real runs: actors killed (by Ray and by SIGKILL), an actor process
hung (SIGSTOP), retries running out, steps and runs past their timeouts, problems too big
for the limits. Every problem ends answered exactly once (equal to an undisturbed run) or
reported failed with its reason, and the run completes."""
import os
import signal

import pytest

from helpers import one_actor, with_model_ref
from latentray.runtime.engine.run import run_spec
from latentray.topologies import build_plan, load_spec

pytestmark = pytest.mark.ray

EXAMPLE = "topologies/examples/latent_chain.yaml"
QUESTIONS = [f"What is {i} plus {i + 1}? Think it through." for i in range(8)]


def chain(batch_size=1, alone=None, **limits):
    """The example chain on a tiny model, its agents in one actor but the agent `alone`."""
    from pathlib import Path

    spec = with_model_ref(load_spec(Path(__file__).resolve().parents[1] / EXAMPLE), "tiny:qwen3-64")
    agents = {k: a.model_copy(update={"max_new_tokens": 8, "latent_steps": min(a.latent_steps, 2)})
              for k, a in spec.agents.items()}
    return one_actor(spec.model_copy(update={
        "agents": agents, "run": spec.run.model_copy(update={"batch_size": batch_size}),
        "limits": spec.limits.model_copy(update=limits)}), alone)


@pytest.fixture(scope="module")
def clean(ray_session):
    spec = chain()
    result = run_spec(spec, build_plan(spec), QUESTIONS, run_name="faults-clean")
    assert not result.failed and result.retries == 0
    return result


def judger_batches(result) -> list:
    return sorted(s["batch"] for s in result.steps if s["agent"] == "judger")


def assert_each_problem_once(result, clean_result) -> None:
    answered = [i for i, a in enumerate(result.answers) if a is not None]
    assert sorted(answered + list(result.failed)) == list(range(len(QUESTIONS)))
    for i in answered:  # equal to the undisturbed run, token for token
        assert result.answers[i] == clean_result.answers[i] and result.tokens[i] == clean_result.tokens[i]


def signal_actor_once(ray_session, run: str, agent: str, how) -> tuple:
    sent = []

    def on_batch(done):
        if not sent and done.indices:
            step = next(s for s in done.step_stats if s["agent"] == agent)
            how(step)
            sent.append(step["pid"])
    return sent, on_batch


def test_sigkill_of_an_actor_process_loses_nothing(ray_session, clean):
    spec = chain(alone="critic")
    sent, on_batch = signal_actor_once(ray_session, "sigkill", "critic",
                                       lambda step: os.kill(step["pid"], signal.SIGKILL))
    result = run_spec(spec, build_plan(spec), QUESTIONS, run_name="sigkill", on_batch=on_batch)
    assert sent
    assert not result.failed and result.answers == clean.answers and result.tokens == clean.tokens
    assert result.retries >= 1  # the batches the dead critic held ran again, and were counted
    assert judger_batches(result) == list(range(len(QUESTIONS)))  # each problem's answer made once
    assert len({s["pid"] for s in result.steps if s["agent"] == "critic"}) == 2


def test_a_hung_actor_is_killed_restarted_and_its_problems_rerun(ray_session, clean):
    """SIGSTOP: the process is alive but does nothing, where no step timeout can reach it.
    No problem finishes for longer than the steps' timeouts allow, so the scheduler kills
    the actor; it restarts and the problems it held run again."""
    spec = chain(alone="refiner", step_timeout_s=1.0)
    sent, on_batch = signal_actor_once(ray_session, "hang", "refiner",
                                       lambda step: os.kill(step["pid"], signal.SIGSTOP))
    result = run_spec(spec, build_plan(spec), QUESTIONS, run_name="hang", on_batch=on_batch)
    assert sent
    assert not result.failed and result.answers == clean.answers and result.tokens == clean.tokens
    assert result.retries >= 1
    refiner_pids = {s["pid"] for s in result.steps if s["agent"] == "refiner"}
    assert len(refiner_pids) == 2 and sent[0] in refiner_pids


def test_when_retries_run_out_those_problems_fail_and_the_rest_complete(ray_session, clean):
    spec = chain(alone="critic", retries=0)
    sent, on_batch = signal_actor_once(ray_session, "no-retry", "critic",
                                       lambda step: ray_session.kill(ray_session.get_actor(step["actor"]),
                                                                    no_restart=False))
    result = run_spec(spec, build_plan(spec), QUESTIONS, run_name="no-retry", on_batch=on_batch)
    assert sent and result.failed
    assert all("retries (limits.retries) ran out" in why for why in result.failed.values())
    assert len(result.failed) < len(QUESTIONS)  # the restarted critic answered the rest
    assert_each_problem_once(result, clean)


def test_a_problem_over_a_limit_fails_alone_and_its_batch_answers(ray_session, clean):
    spec = chain(batch_size=4, max_prompt_tokens=400)
    long = "Please consider this carefully. " * 20 + "What is 1 plus 1?"
    questions = QUESTIONS[:2] + [long, "", "bad\x00bytes"] + QUESTIONS[2:5]
    result = run_spec(spec, build_plan(spec), questions, run_name="over-limit")
    assert set(result.failed) == {2, 3, 4}
    assert "limits.max_prompt_tokens = 400" in result.failed[2] and "step planner" in result.failed[2]
    assert "empty" in result.failed[3] and "control character U+0000 at offset 3" in result.failed[4]
    ok = [i for i in range(len(questions)) if i not in result.failed]
    assert [result.answers[i] for i in ok] == clean.answers[:5]  # a batch gives what each alone gives
    assert [result.tokens[i] for i in ok] == clean.tokens[:5]


def test_a_batch_whose_message_is_too_big_is_split_into_single_problems(ray_session, clean):
    biggest_single = max(r["bytes"] for r in clean.trace if r["kind"] == "kv")
    spec = chain(batch_size=4, max_message_bytes=biggest_single)
    result = run_spec(spec, build_plan(spec), QUESTIONS, run_name="split")
    assert not result.failed
    assert result.answers == clean.answers and result.tokens == clean.tokens
    assert max(r["bytes"] for r in result.trace if r["kind"] == "kv") <= biggest_single
    # 8 problems in batches of 4 would be 2 judger calls; split, there is one per problem
    assert len(judger_batches(result)) == len(QUESTIONS)


def test_a_step_past_its_timeout_fails_its_problems_with_the_reason(ray_session):
    spec = chain(batch_size=5, step_timeout_s=1e-4)
    result = run_spec(spec, build_plan(spec), QUESTIONS, run_name="step-timeout")
    assert sorted(result.failed) == list(range(len(QUESTIONS)))
    assert all("limits.step_timeout_s = 0.0001 s" in why for why in result.failed.values())


def test_a_run_past_its_timeout_ends_with_every_problem_accounted_for(ray_session, clean):
    spec = chain(run_timeout_s=0.05)
    result = run_spec(spec, build_plan(spec), QUESTIONS, run_name="run-timeout")
    assert result.failed and all("limits.run_timeout_s = 0.05 s" in why for why in result.failed.values())
    assert_each_problem_once(result, clean)
