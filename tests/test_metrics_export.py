"""Run metrics reach the local head's Prometheus export and equal the run's own trace."""
import time
import urllib.request
from collections import Counter, defaultdict

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import METRICS_PORT
from latentray.runtime.engine.run import run_spec
from latentray.runtime.engine.metrics import LATENCY_BUCKETS, prometheus_names
from latentray.topologies import build_plan
from latentray.topologies.spec import GraphSpec

pytestmark = pytest.mark.ray

SPEC = GraphSpec.model_validate({  # the driver records the metrics: its agents can share one actor
    "version": 1, "name": "metrics", "models": {"m": {"ref": "tiny:qwen3-64"}},
    "agents": {"planner": {"model": "m", "role": "Plan: {question}", "latent_steps": 3, "actor": "team"},
               "critic": {"model": "m", "role": "Check: {question}", "latent_steps": 2, "actor": "team"},
               "judger": {"model": "m", "role": "Answer: {question}", "output": "text", "max_new_tokens": 5,
                          "actor": "team"}},
    "topology": {"type": "chain", "order": ["planner", "critic", "judger"], "memory": "accumulate"},
    "run": {"batch_size": 2}})


def scrape(run: str) -> dict:
    """{(metric sample name, frozenset of our tags): value} for one run's samples."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5).read().decode()
    out = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if s.name.startswith("ray_latentray_") and s.labels.get("run") == run:
                tags = frozenset((k, v) for k, v in s.labels.items() if k in ("src", "dst", "kind", "agent", "le"))
                out[(s.name, tags)] = out.get((s.name, tags), 0.0) + s.value
    return out


def expected(result) -> dict:
    want = {}
    edges = defaultdict(list)
    for r in result.trace:
        edges[(r["src"], r["dst"], r["kind"])].append(r)
    for (src, dst, kind), rows in edges.items():
        tags = {("src", src), ("dst", dst), ("kind", kind)}
        want[("ray_latentray_messages_total", frozenset(tags))] = len(rows)
        want[("ray_latentray_message_bytes_total", frozenset(tags))] = sum(r["bytes"] for r in rows)
        want[("ray_latentray_transfer_latency_seconds_count", frozenset(tags))] = len(rows)
        for le in LATENCY_BUCKETS:
            want[("ray_latentray_transfer_latency_seconds_bucket", frozenset(tags | {("le", str(float(le)))}))] = \
                sum(r["latency_s"] <= le for r in rows)
    tokens, latent, steps = Counter(), Counter(), Counter()
    for s in result.steps:
        tokens[s["agent"]] += sum(s["tokens"])
        latent[s["agent"]] += s["latent_steps"]
        steps[s["agent"]] += 1
    for agent in steps:
        tag = frozenset({("agent", agent)})
        want[("ray_latentray_steps_total", tag)] = steps[agent]
        if tokens[agent]:
            want[("ray_latentray_tokens_decoded_total", tag)] = tokens[agent]
        if latent[agent]:
            want[("ray_latentray_latent_steps_total", tag)] = latent[agent]
    want[("ray_latentray_problems_done_total", frozenset())] = len(result.questions)
    return want


def test_metrics_in_the_prometheus_export_equal_the_trace(ray_session):
    questions = ["What is 2 + 2?", "Name a color.", "x", "Is 7 prime?", "Say hi."]
    result = run_spec(SPEC, build_plan(SPEC), questions, run_name="metrics-e2e")
    want = expected(result)
    assert want[("ray_latentray_latent_steps_total", frozenset({("agent", "planner")}))] == 3 * 3  # 3 batches
    # delta memory: planner -> critic, planner -> judger, critic -> judger, per batch
    assert sum(v for (name, _), v in want.items() if name == "ray_latentray_messages_total") == 3 * 3
    deadline, got = time.monotonic() + 30, {}
    while time.monotonic() < deadline:
        got = scrape("metrics-e2e")
        if all(got.get(k) == v for k, v in want.items()):
            break
        time.sleep(0.5)
    missing = {k: (v, got.get(k)) for k, v in want.items() if got.get(k) != v}
    assert not missing, missing
    # every per-edge and per-agent sample of this run is one the trace accounts for
    ours = {k for k in got if not k[0].startswith(("ray_latentray_step_seconds", "ray_latentray_transfer_latency"))}
    assert ours <= set(want), ours - set(want)
    assert {name for name, _ in got} <= prometheus_names()  # the table the dashboard is checked against
