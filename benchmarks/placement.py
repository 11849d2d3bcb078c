"""Bytes that crossed nodes under `placement.strategy: pack` vs `spread`, measured in one run
on a real multi-node Ray on this host (a head and three worker nodes, tests/local_cluster.py).

    python benchmarks/placement.py [--model tiny:qwen3-128] [--problems 16] [--workers 3] [--json PATH]

The same chain (a thinker sending its KV working memory to an answerer, two replicas of
each) runs the same problems under each strategy; the trace says, per message, whether its
bytes were read from another node's object store. pack keeps replica k of every agent on one
node (a STRICT_PACK placement group per lane) and dispatch prefers the replica by a step's
inputs, so a problem's KV stays in one object store; spread scatters the four actors over
three nodes, so a hand-off crosses whenever no replica of the receiver sits by the sender. 'Crossing' here crosses two
raylets and object stores over loopback on one host, not a physical network.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from local_cluster import LocalCluster  # noqa: E402

SPEC = """\
version: 1
name: bench-{strategy}
models:
  base: {{ref: "{model}"}}
agents:
  thinker: {{model: base, role: "Think.\\nProblem: {{question}}", latent_steps: 4, replicas: 2,
            resources: {{custom: {{worker: 0.1}}}}}}
  answerer: {{model: base, role: "Answer.\\nProblem: {{question}}", output: text, max_new_tokens: 8, replicas: 2,
             resources: {{custom: {{worker: 0.1}}}}}}
topology: {{type: chain, order: [thinker, answerer]}}
channels: {{kind: kv}}
run: {{batch_size: 1}}
placement: {{strategy: {strategy}}}
"""


def run(cluster, work: Path, strategy: str, model: str, questions: list) -> dict:
    import subprocess

    spec, qfile, out = work / f"{strategy}.yaml", work / "questions.json", work / f"{strategy}.json"
    spec.write_text(SPEC.format(strategy=strategy, model=model))
    qfile.write_text(json.dumps(questions))
    proc = subprocess.run([sys.executable, str(ROOT / "tests/multinode_driver.py"), str(spec), str(qfile), str(out),
                           "--address", cluster.address], env=cluster.env(), cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    got = json.loads(out.read_text())
    s = got["summary"]
    return {"strategy": strategy, "messages": s["messages"], "message_bytes": s["message_bytes"],
            "cross_node_bytes": s["cross_node_bytes"], "nodes": s["nodes"],
            "actors": sorted({(st["actor"], st["node"][:8]) for st in got["steps"]})}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny:qwen3-128")
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--workers", type=int, default=3, help="worker nodes (the head runs no agent)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    questions = [f"What is {i} plus {i + 5}?" for i in range(args.problems)]
    work = Path(tempfile.mkdtemp(prefix="lrplace"))
    cluster = LocalCluster(work)
    try:
        cluster.start_head(num_cpus=1)
        for k in range(args.workers):
            cluster.add_node(f"node_{k}", {"worker": 1}, num_cpus=4)
        cluster.wait_ready()
        rows = [run(cluster, work, s, args.model, questions) for s in ("pack", "spread")]
    finally:
        cluster.stop()
    print(f"{args.model}, {args.problems} problems, 2 replicas of each agent, {args.workers} worker nodes")
    print(f"{'strategy':>8} {'messages':>9} {'bytes':>12} {'crossed':>12} {'share':>6}  actors (node)")
    for r in rows:
        share = r["cross_node_bytes"] / r["message_bytes"] if r["message_bytes"] else 0.0
        print(f"{r['strategy']:>8} {r['messages']:>9} {r['message_bytes']:>12} {r['cross_node_bytes']:>12} "
              f"{share:>6.0%}  {', '.join(f'{a} ({n})' for a, n in r['actors'])}")
    pack, spread = rows
    if pack["cross_node_bytes"]:
        print(f"spread / pack crossed bytes: {spread['cross_node_bytes'] / pack['cross_node_bytes']:.1f}x")
    else:
        print(f"pack crossed no bytes; spread crossed {spread['cross_node_bytes']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
