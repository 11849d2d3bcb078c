"""benchmarks/scaling_model.py against cases whose answers follow by hand: one agent, a
pipelined chain, more replicas of the slower agent, a transfer between nodes, NIC queueing,
placement, the dispatch rule, steps sharing a node's cores and the serial driver. No Ray; the
whole file runs in well under a second."""
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
    # its input wins), runs 1-2; unit 2 -> b#0 (its load 1 ties b#1's 0 + crossing 1: the
    # one by the input wins the tie), runs 2-3; unit 3 -> b#1 (2 vs 0 + 1), crosses and
    # runs 3.5-4.5.
    p = profile([("a", 1.0, [], 5e8), ("b", 1.0, ["a"], 0)], replicas={"b": 2}, units=3)
    c = sm.Cluster(nodes=2, gpus_per_node=2, link_bytes_per_s=1e9, link_latency_s=0.0, **NO_COPY_COST)
    r = sm.simulate(p, c)
    assert r.nodes_of == {"a": [0], "b": [0, 1]}
    assert (r.cross_node_bytes, r.local_bytes) == (5e8, 1e9)
    assert r.run_s == pytest.approx(4.5)
    assert r.mean_unit_latency_s == pytest.approx((2.0 + 3.0 + 4.5) / 3)


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


# ---------------------------------------------------------------- cores and the serial driver

def cores(n, **kw):
    return sm.Cluster(nodes=1, gpus_per_node=8, cores_per_node=n, **NO_COPY_COST, **kw)


@pytest.mark.parametrize("n, run", [(1, 2.0), (2, 1.0), (math.inf, 1.0)])
def test_two_equal_steps_on_one_core_take_twice_as_long(n, run):
    # a and b, 1 s each, no edge: on one core each runs at half speed and both end at 2 s
    r = sm.simulate(profile([("a", 1.0, [], 0), ("b", 1.0, [], 0)], units=1), cores(n))
    assert r.run_s == pytest.approx(run)
    assert r.mean_unit_latency_s == pytest.approx(run)
    assert r.core_utilization == pytest.approx(0.0 if n == math.inf else 1.0)  # 2 s of work in n x run


def test_three_replicas_share_two_cores():
    # a (1 s) -> b (3 s, 3 replicas), 3 units, 2 cores; a's steps end at 1 and 2 (two jobs
    # on two cores: full speed). At 2: a(u3), b#0 (2 s left), b#1 (3) run at 2/3: a ends at
    # 3.5, leaving 1 and 2. b#2 starts (3): still 3 jobs, b#0 ends at 5, b#1 and b#2 have
    # 1 and 2 left; two jobs, full speed: 6 and 7
    p = profile([("a", 1.0, [], 0), ("b", 3.0, ["a"], 0)], replicas={"b": 3}, units=3)
    shared, alone = sm.simulate(p, cores(2)), sm.simulate(p, cores(math.inf))
    assert shared.nodes_of == {"a": [0], "b": [0, 0, 0]}
    assert shared.run_s == pytest.approx(7.0)
    assert shared.mean_unit_latency_s == pytest.approx((5.0 + 6.0 + 7.0) / 3)
    assert (alone.run_s, alone.mean_unit_latency_s) == (pytest.approx(6.0), pytest.approx(5.0))
    assert shared.core_utilization == pytest.approx(12 / (2 * 7.0))
    assert shared.utilization == {"a": pytest.approx(3 / 7), "b": pytest.approx(9 / (3 * 7))}
    assert shared.bottleneck == "cores"
    assert shared.compute_bound_problems_per_s == pytest.approx(2 * 4 / 4.0)  # 2 cores, 4 s a unit


def test_a_step_queued_behind_shared_cores_then_runs_alone():
    # 4 units on 3 replicas of a 2 s step, 2 cores: units 1-3 share the cores (2/3 each) and
    # end at 3; unit 4 queued behind unit 1 runs alone, 3-5
    r = sm.simulate(profile([("a", 2.0, [], 0)], replicas={"a": 3}, units=4), cores(2))
    assert r.run_s == pytest.approx(5.0)
    assert r.mean_unit_latency_s == pytest.approx((3 * 3.0 + 5.0) / 4)


def test_the_serial_driver_submits_one_step_at_a_time():
    # 2 units of a 1 s step on 2 replicas, 0.5 s of driver work per step
    p = profile([("a", 1.0, [], 0)], replicas={"a": 2}, units=2, overhead=0.5)
    # a fixed delay: both replicas hold 1.5 s from 0
    fixed = sm.simulate(p, cores(math.inf))
    assert (fixed.run_s, fixed.driver_serial, fixed.driver_utilization) == (pytest.approx(1.5), False, 0.0)
    # serial: submitted at 0.5 and 1.0, each then runs 1 s
    serial = sm.simulate(p, cores(math.inf, driver_serial=True))
    assert serial.run_s == pytest.approx(2.0)
    assert serial.mean_unit_latency_s == pytest.approx((1.5 + 2.0) / 2)
    assert serial.driver_utilization == pytest.approx(1.0 / 2.0)
    # one core, serial by default: the driver alone to 0.5; it and a#0 share the core until
    # 1.5 (a#0 has 0.5 s left); a#0 and a#1 share it: 2.5 and 3.0
    one = sm.simulate(p, cores(1))
    assert one.driver_serial
    assert one.run_s == pytest.approx(3.0)
    assert one.mean_unit_latency_s == pytest.approx((2.5 + 3.0) / 2)
    assert one.compute_bound_problems_per_s == pytest.approx(4 / 1.5)  # 1 core, 1.5 s of work a unit


def test_a_busy_serial_driver_is_the_bottleneck():
    # 3 steps of 0.1 s on their own replicas, 0.2 s of driver work each: 0.6 s a unit
    p = profile([("a", 0.1, [], 0), ("b", 0.1, ["a"], 0), ("c", 0.1, ["b"], 0)], units=20, overhead=0.2)
    r = sm.simulate(p, cores(math.inf, driver_serial=True))
    assert r.bottleneck == "driver"
    assert r.run_s == pytest.approx(20 * 0.6 + 0.1)  # the last step runs after the last submission
    assert r.compute_bound_problems_per_s == pytest.approx(4 / 0.6)


def test_unlimited_or_ample_cores_reproduce_the_model_without_cores():
    p = profile([("a", 1.0, [], 0), ("b", 4.0, ["a"], 0)], replicas={"b": 4}, units=50, batch_size=1)
    base = sm.simulate(p, one_node(gpus=9))
    assert sm.simulate(p, sm.Cluster(nodes=1, gpus_per_node=9, cores_per_node=math.inf, **NO_COPY_COST)) == base
    ample = sm.simulate(p, sm.Cluster(nodes=1, gpus_per_node=9, cores_per_node=5, driver_serial=False,
                                      **NO_COPY_COST))
    assert ample.run_s == pytest.approx(base.run_s)
    assert ample.mean_unit_latency_s == pytest.approx(base.mean_unit_latency_s)
    assert ample.core_utilization == pytest.approx(5 * 50 / (5 * base.run_s))
    jittered = [sm.simulate(p, one_node(gpus=9), jitter=0.3, seed=3).run_s,
                sm.simulate(p, sm.Cluster(nodes=1, gpus_per_node=9, cores_per_node=64, driver_serial=False,
                                          **NO_COPY_COST), jitter=0.3, seed=3).run_s]
    assert jittered[0] == pytest.approx(jittered[1])
    assert sm.cluster_from({"cores_per_node": None}).cores_per_node == math.inf
    assert not sm.Cluster().serial_driver and sm.Cluster(cores_per_node=2).serial_driver
    with pytest.raises(ValueError, match="driver_serial must be true, false or null"):
        sm.cluster_from({"driver_serial": 1})


def test_validate_uses_each_entry_s_cores_and_placement(tmp_path, capsys):
    # 4 units of a 2 s step on 2 cores: 1 replica 8 s; 2 replicas 4 s; 4 replicas share the
    # 2 cores at half speed: still 4 s
    one = profile([("b", 2.0, [], 0)], units=4, batch_size=1)
    cluster = {"nodes": 1, "gpus_per_node": 4, "cores_per_node": 2, "placement": "spread"}
    measured = [{"replicas": {"b": k}, "problems_per_s": rate, "profile": one, "cluster": cluster}
                for k, rate in ((1, 0.5), (2, 1.0), (4, 1.0))]
    path = tmp_path / "measured.json"
    path.write_text(json.dumps(measured))
    # the command line's cluster (unlimited cores) yields to the entries'
    assert sm.main(["--validate", str(path), "--gpus-per-node", "1", "--json", str(tmp_path / "out.json")]) == 0
    rows = json.loads((tmp_path / "out.json").read_text())
    assert [r["predicted"] for r in rows] == pytest.approx([0.5, 1.0, 1.0])
    assert [r["within"] for r in rows] == [True, True, True]
    assert rows[2]["bottleneck"] == "cores"
    assert rows[0]["cluster"]["cores_per_node"] == 2 and rows[0]["placement"] == "spread"
    out = capsys.readouterr().out
    assert "1 node x 2 cores" in out and "3/3 within 15%" in out
    measured[0]["placement"] = "pack"
    path.write_text(json.dumps(measured))
    assert sm.main(["--validate", str(path)]) == 2
    assert "placement 'pack' and cluster.placement 'spread' differ" in capsys.readouterr().err


def test_cores_and_driver_on_the_command_line(tmp_path, capsys):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(profile([("a", 1.0, [], 0), ("b", 1.0, [], 0)], units=1, overhead=0.5)))
    out = tmp_path / "out.json"
    # serial driver on one core: a's submission alone to 0.5; b's submission and a share the
    # core to 1.5 (a has 0.5 s left); a and b share it: a ends at 2.5, b at 3.0
    assert sm.main(["--profile", str(path), "--cores-per-node", "1", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert (r["run_s"], r["driver_serial"]) == (pytest.approx(3.0), True)
    assert "1 core per node" in capsys.readouterr().out
    assert sm.main(["--profile", str(path), "--cores-per-node", "1", "--no-driver-serial", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["run_s"] == pytest.approx(3.0)  # 2 x 1.5 s of work on one core
