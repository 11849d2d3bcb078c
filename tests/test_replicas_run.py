"""Replicas on the session's local Ray: units spread over an agent's replicas answer as one
process does, a replica that dies for good leaves the pool while the run goes on, `auto`
grows the slowest agent's pool, and placement that can never be held is refused before
any actor starts (a warning on a cluster that may grow)."""
from __future__ import annotations

import pytest

from helpers import answers_in_one_process
from latentray.runtime.engine.run import run_spec
from test_replicas import load_spec_text
from latentray.topologies import build_plan
from latentray.topologies.errors import SpecError

pytestmark = pytest.mark.ray

QUESTIONS = [f"What is {i} times {i + 3}?" for i in range(6)]
SPEC = """\
version: 1
name: replicas
models:
  base: {ref: "tiny:qwen3-64"}
agents:
  thinker: {model: base, role: "Think.\\nProblem: {question}", latent_steps: 2, replicas: 2}
  answerer: {model: base, role: "Answer.\\nProblem: {question}", output: text, max_new_tokens: 6}
topology: {type: chain, order: [thinker, answerer]}
run: {batch_size: 1}
"""


@pytest.fixture(scope="module")
def reference():
    return answers_in_one_process(load_spec_text(SPEC), QUESTIONS)


def answered_once(result) -> bool:
    return sorted(i for indices in result.units.values() for i in indices) == list(range(len(QUESTIONS)))


def test_replicas_share_the_units_and_answer_as_one_process(ray_session, reference):
    spec = load_spec_text(SPEC)
    result = run_spec(spec, build_plan(spec), QUESTIONS, run_name="two")
    assert (result.answers, result.tokens) == reference and not result.failed and answered_once(result)
    per = result.summary(spec, build_plan(spec))["steps_per_replica"]
    # by the actors' names (a warm actor keeps the name of the run that started it)
    thinkers = {s["actor"] for s in result.steps if s["agent"] == "thinker"}
    (answerer,) = {s["actor"] for s in result.steps if s["agent"] == "answerer"}
    assert len(thinkers) == 2 and set(per) == thinkers | {answerer} == set(result.actor_names)
    assert sum(per[t] for t in thinkers) == len(QUESTIONS) == per[answerer]
    assert min(per[t] for t in thinkers) >= 1  # the least loaded takes the next unit


def test_a_replica_dead_for_good_leaves_and_the_run_goes_on(ray_session, reference):
    from latentray.runtime.engine import warm_actors

    warm_actors.clear()  # the replica to kill is found by the name this run gives it
    spec = load_spec_text(SPEC)

    class KillOnStart:  # once the actors are up, before the first unit: its units find it dead
        killed = False

        def start(self):
            ray_session.kill(ray_session.get_actor("gone/thinker#1"), no_restart=True)
            self.killed = True

        def update(self, problems, tokens):
            pass

    progress = KillOnStart()
    result = run_spec(spec, build_plan(spec), QUESTIONS, run_name="gone", progress=progress)
    assert progress.killed and not result.failed and answered_once(result)
    assert (result.answers, result.tokens) == reference
    assert [name for name, _ in result.replicas_lost] == ["gone/thinker#1"]
    assert result.replicas == {"thinker": 1, "answerer": 1}
    assert result.retries >= 1  # the unit sent to it ran again on the other replica, counted
    assert {s["actor"] for s in result.steps if s["agent"] == "thinker"} == {"gone/thinker#0"}


def test_auto_adds_replicas_to_the_slowest_agent_from_free_room(ray_session, reference):
    # a thinker of (C - 1) / 2 CPUs and the answerer's 1 leave room for exactly one more thinker
    share = (ray_session.cluster_resources()["CPU"] - 1) / 2
    text = SPEC.replace("replicas: 2}", f"replicas: auto, resources: {{num_cpus: {share}}}}}")
    spec = load_spec_text(text)
    result = run_spec(spec, build_plan(spec), QUESTIONS, run_name="auto")
    assert (result.answers, result.tokens) == reference and answered_once(result)
    assert result.replicas == {"thinker": 2, "answerer": 1}


def test_placement_that_can_never_be_held_is_refused_before_actors_start(ray_session, capsys):
    from latentray.runtime.engine.preflight import check_fits

    spec = load_spec_text(SPEC.replace("replicas: 2}", "replicas: 2, resources: {custom: {zone_a: 1}}}"))
    with pytest.raises(SpecError, match=r"agents.thinker.resources.custom.zone_a: unknown resource label 'zone_a'"):
        run_spec(spec, build_plan(spec), QUESTIONS[:1], run_name="unplaced")
    assert not [a for a in ray_session.util.list_named_actors(all_namespaces=True) if "unplaced" in str(a)]
    check_fits(spec, build_plan(spec), started_locally=False)  # a cluster may grow: warned, not refused
    assert ("warning: agents.thinker.resources.custom.zone_a: unknown resource label 'zone_a': no node of the "
            "Ray cluster offers it; actors wait until the cluster can hold them") in capsys.readouterr().err
    cpus = int(ray_session.cluster_resources()["CPU"])
    many = load_spec_text(SPEC.replace("replicas: 2}", f"replicas: {cpus}}}"))
    with pytest.raises(SpecError, match=f"need {cpus + 1} CPU but the Ray cluster has {cpus}"):
        run_spec(many, build_plan(many), QUESTIONS[:1], run_name="unplaced")


def test_a_replica_that_never_answers_leaves_after_the_restart_wait(ray_session, monkeypatch, capsys):
    """An actor Ray cannot place (as one pinned to a node that is gone) never answers its
    probe: after RESTART_WAIT_S it leaves the pool instead of holding the run forever."""
    from latentray.runtime.engine import scheduler
    from latentray.runtime.engine.replicas import Replica, ReplicaPool

    @ray_session.remote(num_cpus=0, resources={"a_node_that_is_gone": 1})
    class Nowhere:
        def ready(self):
            return {"node": "never"}

    handle = Nowhere.remote()
    pool = ReplicaPool({"a": "a"})
    stuck = Replica("a", 0, handle, "stuck/a", node="n1")
    pool.add(stuck)
    monkeypatch.setattr(scheduler, "RESTART_WAIT_S", 0.5)
    sched = scheduler._Scheduler(None, pool, [], [], "gloo", None, None, None)
    sched.probe(stuck)
    assert pool.waiting_for(["a"]) == ["a"]
    done, _ = ray_session.wait(list(sched.probes), timeout=1.0)
    assert not done  # it does not answer
    sched.expire_probes()
    assert pool.gone(["a"]) == ["a"] and pool.removed == [("stuck/a", "did not come back within 0.5 s")]
    assert "replica stuck/a left the run (did not come back within 0.5 s)" in capsys.readouterr().err
    assert pool.every_handle() == [handle]  # still killed at the end
    ray_session.kill(handle)
