"""Warm actors: a session that closes parks its actors, the next one that would start an
actor of the same model, codec parts and resources takes them (same process, no model
load), whichever agents it hosts, and answers as fresh actors do; parked ones stay while
there is room and are killed when a run needs it; a parked actor that died is replaced.
Each spec here hosts its agents in one actor: one process per start."""
import os
import signal
import time

import pytest

from helpers import answers_in_one_process, one_actor, with_model_ref
from latentray.runtime.engine import warm_actors
from latentray.runtime.engine.run import run_spec
from latentray.topologies import build_plan, load_spec

pytestmark = pytest.mark.ray

QUESTIONS = ["What is 2 plus 3?", "Name a color.", "What is 7 times 6?"]


def chain(method="latent", num_cpus=1.0, **limits):
    from pathlib import Path

    spec = with_model_ref(load_spec(Path(__file__).resolve().parents[1] / "topologies/examples/latent_chain.yaml"),
                          "tiny:qwen3-64")
    agents = {k: a.model_copy(update={"max_new_tokens": 6, "latent_steps": min(a.latent_steps, 2),
                                      "resources": a.resources.model_copy(update={"num_cpus": num_cpus})})
              for k, a in spec.agents.items()}
    return one_actor(spec.model_copy(update={
        "agents": agents, "limits": spec.limits.model_copy(update=limits),
        "run": spec.run.model_copy(update={"seed": 11, "method": method})}))


def run(spec, questions=QUESTIONS, name="warm"):
    return run_spec(spec, build_plan(spec), questions, run_name=name)


def pid_of(result) -> int:
    (info,) = result.actor_info
    return info["pid"]


def gone_soon(pid: int) -> bool:
    """The process has exited (or is a zombie): Ray kills asynchronously, so this waits for
    it rather than for a fixed time."""
    for _ in range(600):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ")[-1][0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def fresh(ray_session):
    """The chain on an actor started for it (the pool emptied first)."""
    warm_actors.clear()
    result = run(chain(), name="warm-fresh")
    assert not result.failed and not result.actor_info[0].get("warm")
    return result


def test_the_same_actor_is_taken_and_answers_as_a_fresh_one(ray_session, fresh):
    spec = chain(step_timeout_s=120.0, max_prompt_tokens=4096)  # limits travel with each call
    result = run(spec, name="warm-again")
    assert pid_of(result) == pid_of(fresh) and result.actor_info[0]["warm"]
    assert result.actor_names == fresh.actor_names == ["warm-fresh/team"]  # named by the run that started it
    assert result.answers == fresh.answers and result.tokens == fresh.tokens
    assert warm_actors.parked_count() == 1


def test_other_agents_take_the_same_actor_and_answer_as_they_would_alone(ray_session, fresh):
    """The text baseline's agents (no latent steps) with other roles and token limits: the
    parked actor hosts them, and they answer as the same steps called in one process."""
    spec = chain(method="text")
    agents = {k: a.model_copy(update={"role": "Reply briefly. " + a.role, "max_new_tokens": 4})
              for k, a in spec.agents.items()}
    spec = spec.model_copy(update={"agents": agents})
    text = run(spec, QUESTIONS[:2], name="warm-text")
    assert pid_of(text) == pid_of(fresh) and text.actor_info[0]["warm"]
    assert text.actor_info[0]["agents"] == sorted(spec.agents)
    assert (text.answers, text.tokens) == answers_in_one_process(spec, QUESTIONS[:2])
    back = run(chain(), name="warm-back")
    assert pid_of(back) == pid_of(fresh) and (back.answers, back.tokens) == (fresh.answers, fresh.tokens)


def test_a_call_runs_its_agent_as_it_configures_it():
    """Ray restarts an actor with its first constructor arguments, and a warm actor was built
    for other agents: each call carries its agent's config, and the step runs as it says."""
    built_for = chain()
    spec = chain(method="text")
    agents = {k: a.model_copy(update={"role": "Say it in one word. " + a.role, "max_new_tokens": 3})
              for k, a in spec.agents.items()}
    spec = spec.model_copy(update={"agents": agents})
    assert answers_in_one_process(spec, QUESTIONS, built_for=built_for) == answers_in_one_process(spec, QUESTIONS)
    assert answers_in_one_process(spec, QUESTIONS)[1] != answers_in_one_process(built_for, QUESTIONS)[1]


def test_parked_actors_make_room_for_a_run_that_needs_it(ray_session, fresh):
    """A run whose actor asks for every CPU of the cluster: the parked actors holding CPUs
    are killed first (else its actor would wait for room forever)."""
    run(chain(), QUESTIONS[:1], name="warm-park")
    parked = pid_of(fresh)
    assert warm_actors.parked_count() >= 1
    result = run(chain(num_cpus=ray_session.cluster_resources()["CPU"]), name="warm-all-cpus")
    assert pid_of(result) != parked and not result.actor_info[0].get("warm")
    assert gone_soon(parked) and warm_actors.parked_count() == 1  # its own, parked when it closed
    assert result.answers == fresh.answers


def test_a_parked_actor_killed_for_good_is_replaced(ray_session, fresh):
    import ray

    first = run(chain(), QUESTIONS[:1], name="warm-die")
    ray.kill(ray.get_actor(first.actor_names[0]), no_restart=True)
    result = run(chain(), name="warm-after-death")
    assert not result.failed and result.answers == fresh.answers
    assert pid_of(result) != pid_of(first) and not result.actor_info[0].get("warm")


def test_a_sigkilled_parked_actor_is_restarted_or_replaced_and_answers(ray_session, fresh):
    """Its process died; Ray restarts it behind the same handle, which answers the reset
    once its model is loaded again (or, past ANSWER_S, a fresh one takes its place)."""
    first = run(chain(), QUESTIONS[:1], name="warm-sigkill")
    os.kill(pid_of(first), signal.SIGKILL)
    result = run(chain(), name="warm-restarted")
    assert not result.failed and result.answers == fresh.answers and pid_of(result) != pid_of(first)


def test_without_keep_warm_a_session_kills_its_actor(ray_session, fresh, monkeypatch):
    warm_actors.clear()
    monkeypatch.setattr(warm_actors, "_depth", 0)
    result = run(chain(), QUESTIONS[:1], name="warm-off")
    assert warm_actors.parked_count() == 0
    assert gone_soon(pid_of(result))


def test_reset_forgets_what_earlier_runs_left():
    """rdt stats nobody popped (a run that ended mid-step) must not answer the next run's
    pop_stats: batch numbers start at 0 again."""
    from latentray.agents.actor import AgentActor
    from latentray.runtime.engine.agent_configs import agent_configs_for

    actor = AgentActor(dict(ref="tiny:qwen3-64"), agent_configs_for(["judger"], chain()))
    actor._stats[(0, "judger")] = {"stale": True}
    assert actor.reset()["agents"] == ["judger"]
    with pytest.raises(KeyError):
        actor.pop_stats(0, "judger")


def test_a_model_file_rewritten_under_the_same_path_is_another_actor(tmp_path):
    """The warm key stamps the files a ref reads: a GGUF file, a local directory's files."""
    from latentray.runtime.engine.actors import model_files_stamp

    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + bytes(8))
    first = model_files_stamp(f"gguf:{gguf}")
    gguf.write_bytes(b"GGUF" + bytes(16))
    assert first is not None and model_files_stamp(f"gguf:{gguf}") != first
    local = tmp_path / "dir"
    local.mkdir()
    (local / "config.json").write_text("{}")
    before = model_files_stamp(str(local))
    (local / "model.safetensors").write_bytes(bytes(4))
    assert model_files_stamp(str(local)) != before
    assert model_files_stamp("tiny:qwen3-64") is None


def test_a_parked_actor_takes_no_place_whose_name_the_run_starts_another_actor_under(monkeypatch):
    """Two live actors cannot share a name: one parked as `run/b` serves the place named
    `run/b` or none, and one parked under another run's name may take any place."""
    from types import SimpleNamespace as Parked

    own, other, foreign = Parked(key="k", name="run/b"), Parked(key="k", name="old/x"), Parked(key="j", name="run/a")
    monkeypatch.setattr(warm_actors, "_parked", [own, other, foreign])
    assert warm_actors._pick(["k", "k"], ("run/a", "run/b")) == [other, own]
    assert warm_actors._parked == [foreign]  # another key: not taken (take() kills it, its name wanted)
    monkeypatch.setattr(warm_actors, "_parked", [own])
    assert warm_actors._pick(["k", "k"], ("run/b", "run/c")) == [own, None]
    monkeypatch.setattr(warm_actors, "_parked", [own])
    assert warm_actors._pick(["k", "k"], ("run/a", "run/b")) == [None, own]
