"""One question's latency through each way in: latentray.run (actors started and models
loaded for the call), a latentray.Session (warm actors), and the gRPC gateway (warm actors,
loopback), on the example chain and its real model by default. Prints each path's median
over --repeats calls and its ratio to the session, measured in this one run; the answers
must be the same on every path.

  python benchmarks/python_api.py [--spec SPEC] [--repeats 5] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import latentray  # noqa: E402
from latentray.runtime.gateway.client import GatewayClient  # noqa: E402
from latentray.runtime.gateway.server import GatewayServer  # noqa: E402
from latentray.runtime.gateway.service import GatewayService  # noqa: E402

QUESTION = "What is the capital of France?"


def timed(call, repeats: int) -> tuple:
    """(median seconds, the answers seen) over `repeats` calls."""
    seconds, answers = [], set()
    for _ in range(repeats):
        t0 = time.perf_counter()
        answers.add(call())
        seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds), answers


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "topologies/examples/latent_chain.yaml"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cold-repeats", type=int, default=2, help="latentray.run calls (each starts the actors)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    spec = latentray.load_spec(args.spec)
    rows = {}
    rows["latentray.run (actors started per call)"] = timed(lambda: latentray.run(spec, QUESTION).answers[0],
                                                             args.cold_repeats)
    with latentray.Session(spec) as session:
        session.run(QUESTION)  # warm-up: the first call pays one-off costs
        rows["latentray.Session.run (warm actors)"] = timed(lambda: session.run(QUESTION).answers[0], args.repeats)
    service = GatewayService(spec, session.plan, run_name="api-bench").start()
    server = GatewayServer(service, "127.0.0.1", 0).start()
    try:
        with GatewayClient(server.address, timeout=3600) as client:
            client.solve(QUESTION)  # warm-up
            rows["gRPC gateway Solve (warm actors, loopback)"] = timed(
                lambda: client.solve(QUESTION)["answers"][0]["answer"], args.repeats)
    finally:
        server.stop(5)
        service.close()
    base = rows["latentray.Session.run (warm actors)"][0]
    answers = set().union(*(a for _, a in rows.values()))
    print(f"{spec.name} on {spec.models[next(iter(spec.models))].ref}, one question; answers identical on every "
          f"path: {len(answers) == 1} ({sorted(answers)[0]!r})")
    for name, (median, _) in rows.items():
        print(f"{name:<45} median {median:7.3f} s   x{median / base:.2f} the session's")
    if args.json:
        args.json.write_text(json.dumps({"spec": spec.name, "answers": sorted(answers),
                                         "median_s": {k: v[0] for k, v in rows.items()}}, indent=2) + "\n")


if __name__ == "__main__":
    main()
