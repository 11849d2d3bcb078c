"""Run metrics through `ray.util.metrics`, per agent and per edge.

The driver records them from each finished batch's step stats, the same numbers the
trace holds, so the dashboard's metrics view and a Prometheus scrape of
`/metrics` (`ray_latentray_*`) agree with `trace/` to the message. Tags: `run` on every
metric; `agent`, `replica` (the actor's name) and `node` (its Ray node id) on per-agent
metrics; `src`, `dst`, `kind` on per-edge metrics (as in the trace: the sending agent, the
receiving step).
"""
from __future__ import annotations

# Transfer latency buckets, in seconds: a local object-store hop takes ~1 ms, a
# cross-node KV cache of a large model seconds.
LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
STEP_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0]

EDGE_TAGS = ("run", "src", "dst", "kind")
AGENT_TAGS = ("run", "agent", "replica", "node")
RUN_TAGS = ("run",)

# name -> (kind, description, tags, histogram boundaries): every metric this project
# exports. Prometheus shows each with Ray's `ray_` prefix (counters end in `_total`,
# histograms in `_bucket`, `_count` and `_sum`); the Grafana dashboard
# (runtime/engine/grafana/latentray.json) queries only these.
METRICS = {
    "latentray_messages": ("counter", "latent messages delivered, per edge", EDGE_TAGS, None),
    "latentray_message_bytes": ("counter", "bytes of latent messages delivered (as sent), per edge", EDGE_TAGS, None),
    "latentray_cross_node_bytes": ("counter", "bytes of latent messages read from another node's object store, "
                                   "per edge (the rest were read in place)", EDGE_TAGS, None),
    "latentray_transfer_latency_seconds": ("histogram", "sent by the producing step to read by the receiving step, "
                                           "per edge", EDGE_TAGS, LATENCY_BUCKETS),
    "latentray_latent_steps": ("counter", "latent steps run (one forward pass over a batch each), per agent",
                               AGENT_TAGS, None),
    "latentray_tokens_decoded": ("counter", "text tokens decoded, per agent", AGENT_TAGS, None),
    "latentray_steps": ("counter", "step calls finished (one per batch), per agent", AGENT_TAGS, None),
    "latentray_step_seconds": ("histogram", "compute time of one step call, per agent", AGENT_TAGS, STEP_BUCKETS),
    "latentray_problems_done": ("counter", "problems done", RUN_TAGS, None),
    "latentray_problems_failed": ("counter", "problems failed", RUN_TAGS, None),
    "latentray_problems_retried": ("counter", "problems retried", RUN_TAGS, None),
    "latentray_replicas_lost": ("counter", "replicas that died for good and left the run", RUN_TAGS, None),
}

_DEFINED: dict = {}  # one metric object per name per process (Ray registers each name once)


def prometheus_names() -> set:
    """The sample names a Prometheus scrape shows for METRICS."""
    out = set()
    for name, (kind, *_rest) in METRICS.items():
        suffixes = ("_total",) if kind == "counter" else ("_bucket", "_count", "_sum")
        out.update(f"ray_{name}{suffix}" for suffix in suffixes)
    return out


def metric(name: str):
    """The ray.util.metrics object of a METRICS entry, made once per process."""
    if name not in _DEFINED:
        from ray.util import metrics

        kind, description, tags, boundaries = METRICS[name]
        if kind == "counter":
            _DEFINED[name] = metrics.Counter(name, description=description, tag_keys=tags)
        else:
            _DEFINED[name] = metrics.Histogram(name, description=description, boundaries=boundaries, tag_keys=tags)
    return _DEFINED[name]


class RunMetrics:
    """Records one run's metrics; every method is cheap and safe to call per batch."""

    def __init__(self, run_name: str):
        self.run = run_name

    def batch_done(self, step_stats: list, rows: int) -> None:
        for s in step_stats:
            agent = {"run": self.run, "agent": s["agent"], "replica": s.get("actor", ""), "node": s.get("node", "")}
            metric("latentray_steps").inc(1, tags=agent)
            if s.get("compute_s") is not None:
                metric("latentray_step_seconds").observe(s["compute_s"], tags=agent)
            if s.get("latent_steps"):
                metric("latentray_latent_steps").inc(s["latent_steps"], tags=agent)
            if sum(s["tokens"]):
                metric("latentray_tokens_decoded").inc(sum(s["tokens"]), tags=agent)
            for e in s["inbox"]:
                edge = {"run": self.run, "src": e["src"], "dst": s["step"], "kind": e["kind"]}
                metric("latentray_messages").inc(1, tags=edge)
                if e["bytes"]:
                    metric("latentray_message_bytes").inc(e["bytes"], tags=edge)
                    if e.get("cross_node"):
                        metric("latentray_cross_node_bytes").inc(e["bytes"], tags=edge)
                if e.get("latency_s") is not None:
                    metric("latentray_transfer_latency_seconds").observe(max(e["latency_s"], 0.0), tags=edge)
        metric("latentray_problems_done").inc(rows, tags={"run": self.run})

    def problems_failed(self, n: int) -> None:
        if n:
            metric("latentray_problems_failed").inc(n, tags={"run": self.run})

    def replica_lost(self) -> None:
        metric("latentray_replicas_lost").inc(1, tags={"run": self.run})

    def problems_retried(self, n: int) -> None:
        if n:
            metric("latentray_problems_retried").inc(n, tags={"run": self.run})
