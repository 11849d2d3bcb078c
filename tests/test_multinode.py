"""Runs across a real multi-node Ray on this host: a head and two worker nodes, each a
`ray start` of its own bound to 127.0.0.1 (tests/local_cluster.py), with token auth.

- a chain pinned to two nodes answers as one process does, and its KV crossed nodes;
  its model is a GGUF file each node converts into its own cache, which starts empty;
- `latentray submit` of a spec with replicas spread over the workers: every problem once,
  the job's actors on more than one node;
- a node lost mid-run (the one running the answering agent and a replica of the other):
  every problem answered exactly once, as undisturbed, the retries counted, the lost actors
  back on the surviving node.
Drivers run in processes of their own (tests/multinode_driver.py, the CLI), so this test
process keeps the session's local Ray. Every node this module starts, it stops.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import answers_in_one_process
from local_cluster import LocalCluster
from test_replicas import load_spec_text

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = [f"What is {i} plus {i + 2}?" for i in range(6)]
# a lost node is noticed in about a second, not Ray's default of half a minute
FAST_FAILURE = {"RAY_health_check_period_ms": "500", "RAY_health_check_failure_threshold": "3",
                "RAY_health_check_initial_delay_ms": "0"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    work = tmp_path_factory.mktemp("cluster")
    c = LocalCluster(work)
    caches = {name: work / f"cache_{name}" for name in ("head", "node_b", "node_c")}
    try:
        c.start_head(num_cpus=1, LATENTRAY_CACHE=str(caches["head"]), **FAST_FAILURE)
        c.add_node("node_b", {"worker": 1}, num_cpus=4, LATENTRAY_CACHE=str(caches["node_b"]), **FAST_FAILURE)
        c.add_node("node_c", {"worker": 1}, num_cpus=4, LATENTRAY_CACHE=str(caches["node_c"]), **FAST_FAILURE)
        c.wait_ready()
        c.caches = caches
        yield c
    finally:
        leftovers = c.stop()
    assert not leftovers, f"processes outlived their node: {leftovers}"


def drive(cluster, tmp_path, spec_text: str, *extra) -> dict:
    spec, questions, result = tmp_path / "spec.yaml", tmp_path / "questions.json", tmp_path / "result.json"
    spec.write_text(spec_text)
    questions.write_text(json.dumps(QUESTIONS))
    proc = subprocess.run([sys.executable, str(ROOT / "tests/multinode_driver.py"), str(spec), str(questions),
                           str(result), "--address", cluster.address, *extra], env=cluster.env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(result.read_text())


def chain_spec(name: str, model: str, thinker: str, answerer: str, extra: str = "") -> str:
    return f"""\
version: 1
name: {name}
models:
  base: {{ref: "{model}"}}
agents:
  thinker: {{model: base, role: "Think about it.\\nProblem: {{question}}", latent_steps: 2, {thinker}}}
  answerer: {{model: base, role: "Answer.\\nProblem: {{question}}", output: text, max_new_tokens: 6, {answerer}}}
topology: {{type: chain, order: [thinker, answerer]}}
channels: {{kind: kv}}
run: {{batch_size: 1}}
{extra}"""


def test_a_chain_pinned_to_two_nodes_answers_as_one_process(cluster, tmp_path, monkeypatch):
    from test_model_cache import cut_gguf, smollm2_gguf

    gguf = cut_gguf(smollm2_gguf(), tmp_path / "smollm2-cut.gguf")
    text = chain_spec("pinned", f"gguf:{gguf}", "resources: {custom: {node_b: 1}}",
                      "resources: {custom: {node_c: 1}}")
    monkeypatch.setenv("LATENTRAY_CACHE", str(tmp_path / "reference-cache"))
    answers, tokens = answers_in_one_process(load_spec_text(text), QUESTIONS)

    got = drive(cluster, tmp_path, text)
    assert got["answers"] == answers and got["tokens"] == tokens and not got["failed"]
    nodes = {s["agent"]: {s["node"]} for s in got["steps"]}
    for s in got["steps"]:
        nodes[s["agent"]].add(s["node"])
    ids = cluster.node_ids()
    assert nodes == {"thinker": {ids["node_b"]}, "answerer": {ids["node_c"]}}
    kv = [r for r in got["trace"] if r["kind"] == "kv"]
    assert len(kv) == len(QUESTIONS) and all(r["cross_node"] and r["bytes"] > 0 for r in kv)
    assert {(r["src_node"], r["dst_node"]) for r in kv} == {(ids["node_b"], ids["node_c"])}
    assert got["summary"]["cross_node_bytes"] == sum(r["bytes"] for r in kv)
    # each node converted the GGUF into its own cache, which started empty
    for name in ("node_b", "node_c"):
        assert len(list((cluster.caches[name] / "models").glob("*/latentray.json"))) == 1, name
    assert not cluster.caches["head"].exists()


REPLICATED = chain_spec("spread", "tiny:qwen3-64", "replicas: 2, resources: {custom: {worker: 0.1}}",
                        "resources: {custom: {worker: 0.1}}", "placement: {strategy: spread}\n")


def test_submit_runs_replicas_on_several_nodes_each_problem_once(cluster, tmp_path):
    spec, out = tmp_path / "spec.yaml", (tmp_path / "out").resolve()
    spec.write_text(REPLICATED)
    args = [a for q in QUESTIONS for a in ("-q", q)]
    done = subprocess.run([sys.executable, "-m", "latentray", "submit", str(spec), *args, "-o", str(out),
                           "--quiet", "--name", "spread", "--wait", "--address", cluster.dashboard], env=cluster.env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert re.search(r"job \S+ SUCCEEDED", done.stderr)
    import pyarrow.dataset as ds

    answers = ds.dataset(out / "answers", format="parquet").to_table().to_pylist()
    assert sorted(r["index"] for r in answers) == list(range(len(QUESTIONS)))  # each problem once
    steps = ds.dataset(out / "steps", format="parquet").to_table().to_pylist()
    where = {(s["actor"], s["node"]) for s in steps}
    assert {a for a, _ in where} == {"spread/thinker#0", "spread/thinker#1", "spread/answerer"}
    assert len({n for _, n in where}) == 2  # the two workers, and only them
    assert {n for _, n in where} == {cluster.node_ids()[n] for n in ("node_b", "node_c")}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["replicas"] == {"thinker": 2, "answerer": 1}


def test_a_node_lost_mid_run_loses_no_problem(cluster, tmp_path):
    from latentray.topologies import build_plan

    reference = load_spec_text(REPLICATED)
    answers, tokens = answers_in_one_process(reference, QUESTIONS)
    assert len(build_plan(reference).steps) == 2
    ids = cluster.node_ids()
    sessions = {ids[n.name]: n.proc.pid for n in cluster.nodes if n.name != "head"}
    got = drive(cluster, tmp_path, REPLICATED.replace("name: spread", "name: lost"), "--kill-node-of", "answerer",
                "--sessions", json.dumps(sessions))
    (lost,) = got["killed"]
    survivor = next(node for node in sessions if node != lost)
    assert not got["failed"] and got["answers"] == answers and got["tokens"] == tokens
    answered = sorted(i for indices in got["units"].values() for i in indices)
    assert answered == list(range(len(QUESTIONS)))  # exactly once
    assert got["retries"] >= 1  # the units in flight on the lost node ran again, counted
    answerer_nodes = [s["node"] for s in got["steps"] if s["agent"] == "answerer"]
    assert answerer_nodes[0] == lost and answerer_nodes[-1] == survivor  # restarted on the survivor
    assert {s["node"] for s in got["steps"]} <= {lost, survivor}
