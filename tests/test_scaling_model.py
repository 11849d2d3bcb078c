"""benchmarks/scaling_model.py against cases whose answers follow by hand: one agent, a
pipelined chain, more replicas of the slower agent, a transfer between nodes, NIC queueing,
placement and the dispatch rule. No Ray; the whole file runs in well under a second."""
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "scaling_model.py"
_spec = importlib.util.spec_from_file_location("scaling_model", PATH)
sm = sys.modules["scaling_model"] = importlib.util.module_from_spec(_spec)  # dataclasses look it up
_spec.loader.exec_module(sm)

NO_COPY_COST = dict(local_bytes_per_s=math.inf, local_latency_s=0.0)  # same-node handoff is free


def profile(steps, replicas=None, batch_size=4, units=10, overhead=0.0, max_in_flight="all"):
    """steps: (id, compute_s, inputs, message_bytes); each step runs on its own agent."""
    replicas = replicas or {}
    return {"batch_size": batch_size, "problems": batch_size * units, "max_in_flight": max_in_flight,
            "dispatch_overhead_s": overhead,
            "agents": {sid: {"replicas": replicas.get(sid, 1), "gpus": 1} for sid, *_ in steps},
            "steps": [{"id": sid, "agent": sid, "compute_s": c, "inputs": list(inp), "message_bytes": b}
                      for sid, c, inp, b in steps]}


def one_node(gpus=8):
    return sm.Cluster(nodes=1, gpus_per_node=gpus, **NO_COPY_COST)


@pytest.mark.parametrize("in_flight", ["all", 1])
def test_one_agent_throughput_is_batch_over_compute_plus_overhead(in_flight):
    # 10 units back to back on one replica, each 1.5 s compute + 0.5 s overhead: 2 s a unit
    r = sm.simulate(profile([("a", 1.5, [], 0)], overhead=0.5, max_in_flight=in_flight), one_node())
    assert r.run_s == pytest.approx(20.0)
    assert r.problems_per_s == pytest.approx(4 / 2.0)
    assert r.utilization == {"a": pytest.approx(1.0)}
    assert r.bottleneck == "a"
    # all submitted at 0: unit k ends at 2k, mean (2 + ... + 20) / 10; one at a time: 2 s each
    assert r.mean_unit_latency_s == pytest.approx(11.0 if in_flight == "all" else 2.0)


@pytest.mark.parametrize("a, b", [(1.0, 3.0), (3.0, 1.0)])
def test_two_step_chain_is_set_by_the_slower_step(a, b):
    # 20 units: the slower step runs back to back after the first unit reaches it (or the
    # faster one drains after it): run = min + 20 x max
    r = sm.simulate(profile([("a", a, [], 0), ("b", b, ["a"], 0)], units=20, batch_size=2), one_node())
    assert r.run_s == pytest.approx(1.0 + 20 * 3.0)
    assert r.problems_per_s == pytest.approx(40 / 61)
    slow = "b" if b > a else "a"
    assert r.bottleneck == slow
    assert r.utilization[slow] == pytest.approx(60 / 61)
    assert r.compute_bound_problems_per_s == pytest.approx(2 / 3.0)


def test_doubling_the_bottleneck_doubles_throughput_until_the_other_agent_binds():
    # a: 1 s, b: 4 s, 400 units all submitted; units go round robin over b's replicas.
    # R=1: 1 + 400*4; R=2: the second replica's last unit ends at 2 + 200*4; R>=4: a binds,
    # unit k leaves a at k and b at k + 4
    expected_run = {1: 1601.0, 2: 802.0, 4: 404.0, 8: 404.0}
    rates = {}
    for k, run in expected_run.items():
        p = profile([("a", 1.0, [], 0), ("b", 4.0, ["a"], 0)], replicas={"b": k}, units=400, batch_size=1)
        r = sm.simulate(p, one_node(gpus=9))
        assert r.run_s == pytest.approx(run)
        assert r.compute_bound_problems_per_s == pytest.approx(min(1.0, k / 4.0))
        rates[k] = r.problems_per_s
        assert rates[k] == pytest.approx(400 / run)
    assert rates[2] / rates[1] == pytest.approx(1601 / 802)  # 1.996: doubled, less the pipeline's fill
    assert rates[4] / rates[2] == pytest.approx(802 / 404)  # 1.985
    assert rates[8] == rates[4]  # a binds
    assert sm.simulate(profile([("a", 1.0, [], 0), ("b", 4.0, ["a"], 0)], replicas={"b": 8}, units=400,
                               batch_size=1), one_node(gpus=9)).bottleneck == "a"


def test_a_cross_node_transfer_adds_latency_plus_bytes_over_bandwidth():
    p = profile([("a", 1.0, [], 2e9), ("b", 2.0, ["a"], 0)], units=1, overhead=0.25)
    local = sm.simulate(p, sm.Cluster(nodes=1, gpus_per_node=2, **NO_COPY_COST))
    remote = sm.simulate(p, sm.Cluster(nodes=2, gpus_per_node=1, link_bytes_per_s=1e9, link_latency_s=0.5,
                                       **NO_COPY_COST))
    assert remote.nodes_of == {"a": [0], "b": [1]}
    assert local.mean_unit_latency_s == pytest.approx(0.25 + 1.0 + 0.25 + 2.0)
    assert remote.mean_unit_latency_s == pytest.approx(3.5 + 0.5 + 2e9 / 1e9)
    assert (remote.cross_node_bytes, remote.local_bytes) == (2e9, 0)
    assert (local.cross_node_bytes, local.local_bytes) == (0, 2e9)


def test_same_node_handoff_costs_its_latency_and_bandwidth():
    p = profile([("a", 1.0, [], 4e9), ("b", 1.0, ["a"], 0)], units=1)
    r = sm.simulate(p, sm.Cluster(nodes=1, gpus_per_node=2, local_bytes_per_s=16e9, local_latency_s=0.01))
    assert r.mean_unit_latency_s == pytest.approx(1.0 + 0.01 + 4e9 / 16e9 + 1.0)


def test_concurrent_transfers_into_one_node_queue_on_its_nic():
    # two senders on nodes 0 and 1 finish at 1 s; both messages go to node 2, whose ingress
    # takes one at a time: 1 + 1 s + 0.1 s, then the second 1 s later
    p = profile([("e1", 1.0, [], 1e9), ("e2", 1.0, [], 1e9), ("s", 1.0, ["e1", "e2"], 0)], units=1)
    c = sm.Cluster(nodes=3, gpus_per_node=1, link_bytes_per_s=1e9, link_latency_s=0.1, **NO_COPY_COST)
    r = sm.simulate(p, c, placement="spread")
    assert r.nodes_of == {"e1": [0], "e2": [1], "s": [2]}
    assert r.mean_unit_latency_s == pytest.approx(1.0 + 2 * 1.0 + 0.1 + 1.0)
    assert r.cross_node_bytes == 2e9
    assert r.network_utilization == pytest.approx(2.0 / 4.1)  # node 2's ingress, busy 2 s of 4.1


def test_pack_keeps_the_pipeline_on_a_node_and_spread_does_not():
    p = profile([("a", 1.0, [], 1e6), ("b", 1.0, ["a"], 0)], units=5)
    c = sm.Cluster(nodes=2, gpus_per_node=2)
    packed, spread = sm.simulate(p, c, "pack"), sm.simulate(p, c, "spread")
    assert packed.nodes_of == {"a": [0], "b": [0]}
    assert (packed.cross_node_bytes, packed.local_bytes) == (0, 5e6)
    assert spread.nodes_of == {"a": [0], "b": [1]}
    assert (spread.cross_node_bytes, spread.local_bytes) == (5e6, 0)


def test_a_second_reader_on_a_node_reads_the_copy_already_there():
    # a fills node 0 (2 GPUs); b and c on node 1 both read a's message: one transfer, one
    # read of the copy, and c's input arrives when b's does
    p = profile([("a", 1.0, [], 1e9), ("b", 1.0, ["a"], 0), ("c", 3.0, ["a"], 0)], units=1)
    p["agents"]["a"]["gpus"] = 2
    c = sm.Cluster(nodes=2, gpus_per_node=2, link_bytes_per_s=1e9, link_latency_s=0.5, **NO_COPY_COST)
    r = sm.simulate(p, c)
    assert r.nodes_of == {"a": [0], "b": [1], "c": [1]}
    assert (r.cross_node_bytes, r.local_bytes) == (1e9, 1e9)
    assert r.mean_unit_latency_s == pytest.approx(1.0 + 0.5 + 1.0 + 3.0)
    assert r.network_utilization == pytest.approx(1.0 / 5.5)


def test_dispatch_counts_a_node_crossing_as_one_queued_step():
    # pack on 2 nodes x 2 GPUs: a and b#0 on node 0, b#1 on node 1; a hop costs 0.5 s.
    # Three units at once, a's steps end at 1, 2, 3. unit 1 -> b#0 (both idle: the one by
    # its input wins); unit 2 -> b#1 (b#0's load 1 ties b#1's 0 + crossing 1: the less
    # loaded wins), runs 2.5-3.5; unit 3 -> b#0 (1 vs 1 + 1), runs 3-4. Had unit 2 stayed
    # on b#0, unit 3 would have crossed and ended at 4.5.
    p = profile([("a", 1.0, [], 5e8), ("b", 1.0, ["a"], 0)], replicas={"b": 2}, units=3)
    c = sm.Cluster(nodes=2, gpus_per_node=2, link_bytes_per_s=1e9, link_latency_s=0.0, **NO_COPY_COST)
    r = sm.simulate(p, c)
    assert r.nodes_of == {"a": [0], "b": [0, 1]}
    assert (r.cross_node_bytes, r.local_bytes) == (5e8, 1e9)
    assert r.run_s == pytest.approx(4.0)
    assert r.mean_unit_latency_s == pytest.approx((2.0 + 3.5 + 4.0) / 3)


def test_auto_in_flight_is_one_per_replica_plus_one():
    p = profile([("a", 1.0, [], 0), ("b", 1.0, ["a"], 0)], replicas={"b": 2}, max_in_flight="auto")
    assert sm.simulate(p, one_node()).max_in_flight == 4


def test_placement_and_profile_errors_name_the_problem():
    p = profile([("a", 1.0, [], 0)], replicas={"a": 3})
    with pytest.raises(ValueError, match="no node has room for a replica of a"):
        sm.simulate(p, sm.Cluster(nodes=1, gpus_per_node=2))
    bad = profile([("a", 1.0, ["z"], 0)])
    with pytest.raises(ValueError, match=r"steps\[0\].inputs: 'z' is not an earlier step"):
        sm.simulate(bad)
    with pytest.raises(ValueError, match="jitter needs a seed"):
        sm.simulate(profile([("a", 1.0, [], 0)]), jitter=0.1)


def test_jitter_is_repeatable_with_a_seed():
    p = profile([("a", 1.0, [], 0), ("b", 2.0, ["a"], 0)], units=20)
    one, two = (sm.simulate(p, one_node(), jitter=0.2, seed=7) for _ in range(2))
    assert one.run_s == two.run_s
    assert one.run_s != sm.simulate(p, one_node()).run_s


def test_validate_prints_predicted_measured_and_error(tmp_path, capsys):
    # the chain of the doubling test, 8 units: runs of 33, 18 and 12 s for 1, 2, 4 replicas of b
    chain = profile([("a", 1.0, [], 0), ("b", 4.0, ["a"], 0)], units=8, batch_size=1)
    measured = [{"replicas": {"b": 1}, "problems_per_s": 8 / 33, "profile": chain},
                {"replicas": {"b": 2}, "problems_per_s": 8 / 18 / 1.1, "profile": chain},
                {"replicas": {"b": 4}, "problems_per_s": 8 / 12 / 1.25, "profile": chain,
                 "cluster": {"gpus_per_node": 5}}]
    path = tmp_path / "measured.json"
    path.write_text(json.dumps(measured))
    assert sm.main(["--validate", str(path), "--json", str(tmp_path / "out.json")]) == 0
    rows = json.loads((tmp_path / "out.json").read_text())
    assert [r["predicted"] for r in rows] == pytest.approx([8 / 33, 8 / 18, 8 / 12])
    assert [r["error"] for r in rows] == pytest.approx([0.0, 0.1, 0.25])
    assert [r["within"] for r in rows] == [True, True, False]
    out = capsys.readouterr().out
    assert "a=1,b=4" in out and "+25.0%" in out and "2/3 within 15%" in out


def test_predict_8x8_covers_both_links_and_the_allocations(capsys):
    assert sm.main(["--predict-8x8", "--problems", "256"]) == 0
    out = capsys.readouterr().out
    assert "not a measurement" in out
    for text in ("RDMA 25 GB/s", "10 GbE 1.25 GB/s", "1 each", "proportional, 64 GPUs"):
        assert text in out
    example = sm.parse_profile(sm.EXAMPLE_PROFILE)
    counts = sm.proportional_replicas(example, 64)
    assert sum(counts.values()) == 64
    # per-unit work 1.054, 1.104, 1.154, 3.204 s: 64 GPUs in that ratio, rounded
    assert counts == {"planner": 10, "critic": 11, "refiner": 11, "judger": 32}
