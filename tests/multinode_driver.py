"""A latentray driver on a multi-node test cluster (tests/local_cluster.py), in a process of
its own: the test process keeps its own local Ray, and this one joins the cluster.

    python tests/multinode_driver.py SPEC QUESTIONS.json RESULT.json --address HOST:PORT
        [--kill-node-of AGENT --sessions '{"<node id>": <session pid>, ...}']

Runs the questions through the spec with run_spec and writes what the test checks: the
answers and tokens, failures, retries, every step's agent, replica and node, the trace's
rows, and the replicas that left. With --kill-node-of, as the first unit finishes, the
node that ran AGENT's step is lost at once (SIGKILL of its `ray start` session), while
the other units are still in flight.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("spec")
    parser.add_argument("questions")
    parser.add_argument("result")
    parser.add_argument("--address", required=True)
    parser.add_argument("--kill-node-of")
    parser.add_argument("--sessions", default="{}")
    args = parser.parse_args()

    from local_cluster import session_processes
    from latentray.runtime.engine.run import run_spec
    from latentray.topologies import build_plan, load_spec

    spec = load_spec(args.spec)
    questions = json.loads(Path(args.questions).read_text())
    sessions = json.loads(args.sessions)
    killed = []

    def on_batch(done) -> None:
        if args.kill_node_of and not killed and done.indices:
            node = next(s["node"] for s in done.step_stats if s["agent"] == args.kill_node_of)
            for pid, _ in session_processes(sessions[node]):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            killed.append(node)

    result = run_spec(spec, build_plan(spec), questions, run_name=spec.name, on_batch=on_batch,
                      address=args.address)
    keep = ("agent", "actor", "node", "batch", "pid", "step")
    Path(args.result).write_text(json.dumps({
        "answers": result.answers, "tokens": result.tokens, "failed": result.failed, "retries": result.retries,
        "units": result.units, "steps": [{k: s.get(k) for k in keep} for s in result.steps],
        "trace": result.trace, "killed": killed, "summary": result.summary(spec, build_plan(spec)),
    }, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
