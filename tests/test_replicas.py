"""Replica pools, `auto` shares and placement checks, without Ray: the rules the scheduler
and pre-flight follow, on values worked out by hand."""
from __future__ import annotations

import pytest

from latentray.runtime.engine.actors import actor_names, group_agents
from latentray.runtime.engine.autoscale import share_replicas
from latentray.runtime.engine.preflight import needed_resources, placement_problems
from latentray.runtime.engine.replicas import NoReplicaLeft, Replica, ReplicaPool
from latentray.runtime.engine.run_identity import spec_identity
from latentray.topologies import build_plan
from latentray.topologies.errors import SpecError

CHAIN = """\
version: 1
name: rchain
models:
  base: {ref: "tiny:qwen3-64"}
agents:
  thinker: {model: base, role: "Think: {question}", latent_steps: 2, replicas: 3}
  answerer: {model: base, role: "Answer: {question}", output: text, max_new_tokens: 4}
topology: {type: chain, order: [thinker, answerer]}
"""


def load_spec_text(text: str = CHAIN, **sections):
    """The spec of a YAML text, with top-level `sections` set or replaced."""
    import yaml

    from latentray.topologies.loader import parse_spec

    return parse_spec({**yaml.safe_load(text), **sections})


def pool_of(*replicas) -> ReplicaPool:
    pool = ReplicaPool({"a": "a", "b": "b"})
    for r in replicas:
        pool.add(r)
    return pool


def test_the_least_loaded_replica_takes_the_step():
    one, two = Replica("a", 0, None, "r/a#0", node="n1", load=2), Replica("a", 1, None, "r/a#1", node="n2", load=1)
    assert pool_of(one, two).pick("a") is two


def test_a_replica_on_the_inputs_node_wins_over_an_idle_one_elsewhere_by_one_step():
    here = Replica("a", 0, None, "r/a#0", node="n1", load=1)
    idle = Replica("a", 1, None, "r/a#1", node="n2", load=0)
    pool = pool_of(here, idle)
    assert pool.pick("a", {"n1"}) is here  # one queued step here costs what the hop costs
    here.load = 2
    assert pool.pick("a", {"n1"}) is idle  # two queued steps cost more than the hop
    assert pool.pick("a", {"n2"}) is idle


def test_a_replica_that_is_not_ready_gets_nothing_while_another_is():
    down = Replica("a", 0, None, "r/a#0", node="n1", ready=False)
    up = Replica("a", 1, None, "r/a#1", node="n1", load=5)
    pool = pool_of(down, up)
    assert pool.pick("a") is up
    assert pool.waiting_for(["a"]) == []
    up.ready = False
    assert pool.waiting_for(["a"]) == ["a"]


def test_a_replica_that_left_is_reported_and_an_empty_pool_says_why(capsys):
    only = Replica("a", 0, None, "r/a", node="n1")
    pool = pool_of(only)
    pool.remove(only, "its node died")
    assert "replica r/a left the run (its node died); 0 replica(s) of a left" in capsys.readouterr().err
    assert pool.gone(["a", "b"]) == ["a", "b"] and pool.removed == [("r/a", "its node died")]
    with pytest.raises(NoReplicaLeft, match="agent 'a' has no replica left: its node died"):
        pool.pick("a")


def test_a_pool_of_plain_handles_has_one_replica_per_actor():
    class Handle:
        def __init__(self, i):
            self._actor_id = i

    shared, own = Handle(1), Handle(2)
    pool = ReplicaPool.of({"x": shared, "y": shared, "z": own})
    assert pool.of_agent("y")[0].handle is shared and len(pool.all()) == 2


def test_auto_shares_free_room_by_step_time_per_replica():
    # a: 1 s, b: 2.5 s per unit. b 2.5 -> b 1.25 -> a 1.0 beats b 0.83 -> b 0.83 beats a 0.5
    assert share_replicas({"a": 1.0, "b": 2.5}, {"a": 1, "b": 1}, {"a": 1, "b": 1}, free=4) == {"a": 1, "b": 3}
    # only what fits: a GPU each for a, two for b, three free GPUs
    assert share_replicas({"a": 1.0, "b": 9.0}, {"a": 1, "b": 1}, {"a": 1, "b": 2}, free=3) == {"b": 1, "a": 1}
    assert share_replicas({"a": 1.0}, {"a": 1}, {"a": 1}, free=0.5) == {}
    assert share_replicas({"a": 1.0}, {"a": 1}, {"a": 1}, free=100, limit=4) == {"a": 3}


def test_replicas_count_in_names_and_resources():
    spec = load_spec_text()
    plan = build_plan(spec)
    assert actor_names(spec, plan, "r") == ["r/answerer", "r/thinker#0", "r/thinker#1", "r/thinker#2"]
    assert needed_resources(spec, plan) == {"CPU": 4.0, "GPU": 0.0}
    everywhere = load_spec_text(run={"replicas": 2})
    assert actor_names(everywhere, plan, "r") == ["r/answerer#0", "r/answerer#1", "r/thinker#0", "r/thinker#1",
                                                  "r/thinker#2"]


def test_agents_sharing_an_actor_share_its_replicas():
    text = CHAIN.replace("replicas: 3}", "replicas: 3, actor: team}").replace("max_new_tokens: 4}",
                                                                               "max_new_tokens: 4, actor: team}")
    with pytest.raises(SpecError, match=r"agents\.\w+\.replicas: actor group 'team' has agents with (1 and 3|3 and 1) replicas"):
        load_spec_text(text)
    shared = load_spec_text(text.replace("max_new_tokens: 4, actor", "max_new_tokens: 4, replicas: 3, actor"))
    (group,) = group_agents(shared, build_plan(shared).agents)
    assert group.initial_replicas == 3 and group.agents == ("thinker", "answerer")


@pytest.mark.parametrize("bad, says", [
    ("replicas: 0", "agents.thinker.replicas: .*whole number from 1 to 1024, or auto; got 0"),
    ("replicas: many", "agents.thinker.replicas: .*or auto; got 'many'"),
    ("resources: {custom: {GPU: 1}}", "custom resource 'GPU' is one of Ray's own"),
    ("resources: {custom: {zone: 0}}", "custom resource 'zone' needs an amount > 0"),
])
def test_bad_replicas_and_labels_name_the_field(bad, says):
    with pytest.raises(SpecError, match=says):
        load_spec_text(CHAIN.replace("replicas: 3", bad))


def test_placement_strategy_is_checked():
    with pytest.raises(SpecError, match="placement.strategy"):
        load_spec_text(placement={"strategy": "scatter"})


NODE = {"CPU": 2.0, "node:x": 1.0}


def test_an_unknown_resource_label_is_named():
    spec = load_spec_text(CHAIN.replace("replicas: 3", "resources: {custom: {zone_a: 1}}"))
    found = placement_problems(spec, build_plan(spec), {"CPU": 4.0}, [NODE, NODE])
    assert found[0][0] == "agents.thinker.resources.custom.zone_a"
    assert "unknown resource label 'zone_a': no node of the Ray cluster offers it" in found[0][1]
    assert "ray start --resources '{\"zone_a\": N}'" in found[0][2]


def test_more_replicas_than_the_cluster_holds():
    spec = load_spec_text(CHAIN)  # 3 + 1 CPUs
    found = placement_problems(spec, build_plan(spec), {"CPU": 3.0}, [{"CPU": 3.0}])
    assert [f for f, _, _ in found] == ["agents.*.replicas, agents.*.resources"]
    assert "need 4 CPU but the Ray cluster has 3" in found[0][1]
    assert placement_problems(spec, build_plan(spec), {"CPU": 4.0}, [NODE, NODE]) == []


def test_one_replica_larger_than_any_node():
    spec = load_spec_text(CHAIN.replace("replicas: 3", "resources: {num_cpus: 3}"))
    found = placement_problems(spec, build_plan(spec), {"CPU": 4.0}, [NODE, NODE])
    assert [f for f, _, _ in found] == ["agents.thinker.resources"]


def test_pack_with_a_pipeline_larger_than_any_node():
    spec = load_spec_text(CHAIN.replace("replicas: 3", "resources: {num_cpus: 1.5}") +
                          "placement: {strategy: pack}\n")
    found = placement_problems(spec, build_plan(spec), {"CPU": 4.0}, [NODE, NODE])
    assert [f for f, _, _ in found] == ["placement.strategy"]
    assert "pack keeps one replica of every agent on one node, which needs {'CPU': 2.5}" in found[0][1]
    spread = load_spec_text(CHAIN.replace("replicas: 3", "resources: {num_cpus: 1.5}") +
                            "placement: {strategy: spread}\n")
    assert placement_problems(spread, build_plan(spread), {"CPU": 4.0}, [NODE, NODE]) == []


def test_replicas_and_placement_leave_a_runs_identity_alone():
    one = load_spec_text(CHAIN.replace("replicas: 3", "replicas: 1"))
    many = load_spec_text(run={"replicas": "auto"}, placement={"strategy": "spread"})
    assert spec_identity(one) == spec_identity(many)
