"""Routing of every topology, from spec to plan (no Ray, no models): who reads whom, in
which order, in which round, and how many messages each round carries."""
from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from latentray.topologies import Edge, Plan, Step, build_plan, parse_spec
from latentray.topologies.loader import load_plan

EXAMPLES = Path(__file__).resolve().parents[1] / "topologies" / "examples"


def spec_for(topology: dict, agents: list, text: tuple = (), kind: str = "hidden", **extra) -> dict:
    return {
        "version": 1, "models": {"m": {"ref": "tiny:qwen3-64"}},
        "agents": {a: {"model": "m", "role": f"{a} {{question}}", "latent_steps": 2,
                       **({"output": "text"} if a in text else {})} for a in agents},
        "topology": topology, "channels": {"kind": kind, **extra.pop("channels", {})}, **extra,
    }


def plan_of(data: dict):
    return build_plan(parse_spec(data))


def inbox(plan) -> dict:
    return {s.id: [e.src for e in s.inputs] for s in plan.steps}


def test_chain_keeps_its_meaning():
    """accumulate over kv: each agent sends its own part once; later agents read every
    earlier part (delta working memory); transfer full re-sends the memory at each hop."""
    spec, plan = load_plan(EXAMPLES / "latent_chain.yaml")
    assert inbox(plan) == {"planner": [], "critic": ["planner"], "refiner": ["planner", "critic"],
                           "judger": ["planner", "critic", "refiner"]}
    assert [s.kv_scope for s in plan.steps] == ["own", "own", "own", "all"] and plan.answer_steps == ("judger",)
    assert [s.kv_merge for s in plan.steps] == ["join", "concat", "concat", "concat"]
    full = spec.model_copy(update={"topology": spec.topology.model_copy(update={"transfer": "full"})})
    plan = build_plan(full)
    assert inbox(plan) == {"planner": [], "critic": ["planner"], "refiner": ["critic"], "judger": ["refiner"]}
    assert [s.kv_scope for s in plan.steps] == ["all"] * 4
    previous = spec.model_copy(update={"topology": spec.topology.model_copy(update={"memory": "previous"})})
    assert inbox(build_plan(previous))["judger"] == ["refiner"]


def test_text_with_accumulate_reads_every_earlier_agents_text_in_order():
    """The text baseline is equal to the latent one: a kv memory holds everything written
    before it, so a text agent with accumulate reads every earlier agent's text."""
    spec, _ = load_plan(EXAMPLES / "latent_chain.yaml")
    text = spec.model_copy(update={"run": spec.run.model_copy(update={"method": "text"})})
    plan = build_plan(text)
    assert inbox(plan) == {"planner": [], "critic": ["planner"], "refiner": ["planner", "critic"],
                           "judger": ["planner", "critic", "refiner"]}
    assert all(e.kind == "text" and e.codec == "identity" and not e.compression for e in plan.edges)
    previous = text.model_copy(update={"topology": text.topology.model_copy(update={"memory": "previous"})})
    assert inbox(build_plan(previous))["judger"] == ["refiner"]
    # a graph: every upstream text, in plan order, through two paths without duplicates
    edges = [{"src": "a", "dst": "b"}, {"src": "a", "dst": "c"}, {"src": "b", "dst": "d"}, {"src": "c", "dst": "d"}]
    data = spec_for({"type": "graph", "edges": edges}, ["a", "b", "c", "d"], text=("d",), kind="text")
    assert inbox(plan_of(data)) == {"a": [], "b": ["a"], "c": ["a"], "d": ["a", "b", "c"]}
    data["topology"]["memory"] = "previous"
    assert inbox(plan_of(data))["d"] == ["b", "c"]


def test_hierarchical_experts_are_independent_and_fan_in():
    plan = plan_of(spec_for({"type": "hierarchical", "experts": ["code", "math", "sci"]},
                            ["math", "sci", "code", "sum"], text=("sum",)))
    assert inbox(plan) == {"code": [], "math": [], "sci": [], "sum": ["code", "math", "sci"]}
    assert [s.round for s in plan.steps] == [1, 1, 1, 2] and plan.rounds == 2
    assert plan.messages_per_round() == {2: 3}
    assert [s.action for s in plan.steps] == ["latent"] * 3 + ["text"]


@pytest.mark.parametrize("n,rounds", [(2, 1), (3, 2), (4, 3), (6, 2)])
def test_mesh_is_all_to_all_every_round(n, rounds):
    talkers = [f"a{i}" for i in range(n)]
    plan = plan_of(spec_for({"type": "mesh", "rounds": rounds}, talkers + ["judge"], text=("judge",)))
    for r in range(2, rounds + 1):
        for a in talkers:
            assert inbox(plan)[f"r{r}/{a}"] == [f"r{r - 1}/{b}" for b in talkers if b != a]
    assert inbox(plan)["final/judge"] == [f"r{rounds}/{a}" for a in talkers]
    expected = {r: n * (n - 1) for r in range(2, rounds + 1)}
    expected[rounds + 1] = n
    assert plan.messages_per_round() == expected  # O(N^2) per exchange round
    assert plan.rounds == rounds + 1 and plan.answer_steps == ("final/judge",)
    assert all(s.kv_scope == "own" for s in plan.steps if s.action == "latent")


def test_mesh_majority_vote_and_include_self():
    plan = plan_of(spec_for({"type": "mesh", "rounds": 2, "judger": "majority", "include_self": True},
                            ["a", "b", "c"], text=("a", "b", "c"), kind="kv"))
    assert plan.answer_mode == "majority" and plan.answer_steps == ("vote/a", "vote/b", "vote/c")
    assert inbox(plan)["r2/b"] == ["r1/a", "r1/b", "r1/c"]
    assert inbox(plan)["vote/c"] == ["r2/a", "r2/b", "r2/c"]
    assert plan.messages_per_round() == {2: 9, 3: 9}


@pytest.mark.parametrize("n,rounds", [(2, 1), (4, 2), (8, 3)])
def test_hub_is_linear_in_spokes(n, rounds):
    spokes = [f"s{i}" for i in range(n)]
    plan = plan_of(spec_for({"type": "hub", "rounds": rounds, "aggregate": "concat"}, ["hub"] + spokes,
                            text=("hub",)))
    for r in range(1, rounds + 1):
        assert inbox(plan)[f"r{r}/hub"] == [f"r{r}/{s}" for s in spokes]
        assert plan.step(f"r{r}/hub").action == "aggregate" and plan.step(f"r{r}/hub").aggregate == "concat"
        for s in spokes:
            assert inbox(plan)[f"r{r}/{s}"] == ([f"r{r - 1}/hub"] if r > 1 else [])
    assert inbox(plan)["final/hub"] == [f"r{rounds}/hub"]
    expected = {1: n, **{r: 2 * n for r in range(2, rounds + 1)}, rounds + 1: 1}
    assert plan.messages_per_round() == expected  # O(N) per round, never N^2
    assert len(plan.edges) == n * rounds + n * (rounds - 1) + 1


def test_hub_with_text_messages_lets_the_hub_agent_write():
    data = spec_for({"type": "hub"}, ["hub", "a", "b"], text=("hub",))
    data["run"] = {"method": "text"}
    plan = plan_of(data)
    assert plan.step("r1/hub").action == "latent" and plan.step("r1/hub").emit == "text"
    assert all(e.kind == "text" for e in plan.edges)


def test_graph_dag_follows_edge_order_and_depth():
    edges = [{"src": "a", "dst": "c"}, {"src": "b", "dst": "c", "kind": "kv", "codec": "identity"},
             {"src": "a", "dst": "b"}, {"src": "c", "dst": "d"}]
    plan = plan_of(spec_for({"type": "graph", "edges": edges}, ["a", "b", "c", "d"], text=("d",)))
    assert [s.id for s in plan.steps] == ["a", "b", "c", "d"]
    assert inbox(plan) == {"a": [], "b": ["a"], "c": ["a", "b"], "d": ["c"]}
    assert [e.kind for e in plan.step("c").inputs] == ["hidden", "kv"]
    assert plan.step("b").emit == "kv" and plan.step("a").emit == "hidden"
    assert [s.round for s in plan.steps] == [1, 2, 3, 4]


def test_graph_cycle_unrolls_for_its_rounds():
    spec, plan = load_plan(EXAMPLES / "graph.yaml")
    assert inbox(plan) == {
        "planner": [], "r1/solver": ["planner"], "r1/checker": ["r1/solver"],
        "r2/solver": ["r1/checker"], "r2/checker": ["r2/solver"], "writer": ["r2/checker", "planner"]}
    assert [e.kind for e in plan.step("writer").inputs] == ["hidden", "kv"]
    assert plan.step("planner").emit == "kv" and plan.step("r1/solver").emit == "hidden"


def test_graph_drops_the_unread_tail_of_a_cycle():
    edges = [{"src": "a", "dst": "b"}, {"src": "b", "dst": "a"}, {"src": "a", "dst": "j"}]
    plan = plan_of(spec_for({"type": "graph", "edges": edges, "rounds": 3}, ["a", "b", "j"], text=("j",)))
    assert inbox(plan) == {"r1/a": [], "r1/b": ["r1/a"], "r2/a": ["r1/b"], "r2/b": ["r2/a"],
                           "r3/a": ["r2/b"], "j": ["r3/a"]}  # r3/b would be read by nobody


def test_graph_self_loop_is_a_bounded_cycle():
    edges = [{"src": "a", "dst": "a"}, {"src": "a", "dst": "j"}]
    plan = plan_of(spec_for({"type": "graph", "edges": edges, "rounds": 2}, ["a", "j"], text=("j",)))
    assert inbox(plan) == {"r1/a": [], "r2/a": ["r1/a"], "j": ["r2/a"]}


def test_per_edge_override_sets_kind_codec_and_transport():
    data = spec_for({"type": "hierarchical"}, ["x", "y", "s"], text=("s",),
                    channels={"edges": [{"src": "y", "dst": "s", "kind": "hidden", "codec": "ridge",
                                         "transport": "rdt"}, {"src": "x", "dst": "s", "kind": "embeds"}]})
    plan = plan_of(data)
    e = plan.step("s").inputs
    assert (e[0].kind, e[0].codec, e[0].transport) == ("embeds", "identity", "object_store")
    assert (e[1].kind, e[1].codec, e[1].transport) == ("hidden", "ridge", "rdt")


def test_single_baseline_keeps_only_the_answerer():
    data = spec_for({"type": "hub", "rounds": 2}, ["hub", "a", "b"], text=("hub",))
    data["run"] = {"method": "single"}
    plan = plan_of(data)
    assert [(s.id, s.inputs) for s in plan.steps] == [("final/hub", ())]


class StarParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: str
    center: str


class Star:
    """A user topology given as module:Class: every other agent sends straight to `center`."""

    Params = StarParams

    def plan(self, spec, params):
        others = [a for a in spec.agents if a != params.center]
        steps = [Step(id=a, agent=a, action="latent", round=1) for a in others]
        steps.append(Step(id=params.center, agent=params.center, action="text", round=2,
                          inputs=tuple(Edge(a, params.center, "hidden") for a in others)))
        return Plan(topology="star", steps=tuple(steps), answer_steps=(params.center,))


def test_user_topology_from_module_class():
    plan = plan_of(spec_for({"type": "test_topologies_plans:Star", "center": "s"}, ["a", "b", "s"],
                            text=("s",)))
    assert plan.topology == "star" and inbox(plan)["s"] == ["a", "b"]
