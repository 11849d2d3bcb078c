"""Gateway under load: start `latentray serve`'s service and server in this process on
loopback (the example chain on its real model by default), send a fixed number of
single-question Solve requests from N concurrent clients, and print requests/s and latency
percentiles per concurrency level, with each level's ratio to one client at a time, all
measured in this one run. Answers must be the same at every level (batching is invisible).
--unbatched adds the highest concurrency again with no collection window (each request its
own batch; only pipelining across the agents' actors), to separate what batching adds.

  python benchmarks/gateway_load.py [--spec SPEC] [--requests 24] [--concurrency 1,4]
                                    [--window-ms 10] [--unbatched] [--json PATH]
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from latentray.runtime.gateway.client import GatewayClient  # noqa: E402  (runtime first: sets the zero-copy flag)
from latentray.runtime.gateway.server import GatewayServer  # noqa: E402
from latentray.runtime.gateway.service import GatewayService  # noqa: E402
from latentray.runtime.engine.questions import read_jsonl_questions  # noqa: E402
from latentray.topologies import build_plan, load_spec  # noqa: E402


def percentile(values: list, p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def load(address: str, questions: list, requests: int, concurrency: int) -> dict:
    """Send `requests` requests (questions in turn) from `concurrency` client threads."""
    order = [questions[i % len(questions)] for i in range(requests)]
    next_index = itertools.count()
    latencies, answers, errors = [], {}, []
    lock = threading.Lock()

    def client() -> None:
        with GatewayClient(address, timeout=3600) as c:
            while (i := next(next_index)) < requests:
                t0 = time.perf_counter()
                try:
                    reply = c.solve(order[i])
                except Exception as exc:  # noqa: BLE001 - counted and reported, the load goes on
                    with lock:
                        errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    for a in reply["answers"]:
                        answers.setdefault(order[i], set()).add(a["answer"])
                    errors.extend(f["reason"] for f in reply["failed"])

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    with GatewayClient(address) as c:
        before = c.health()
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    with GatewayClient(address) as c:
        after = c.health()
    groups = after["groups_run"] - before["groups_run"]
    return {"questions_per_group": (after["questions_run"] - before["questions_run"]) / max(groups, 1),
            "concurrency": concurrency, "requests": requests, "wall_s": wall, "requests_per_s": len(latencies) / wall,
            "p50_s": percentile(latencies, 50), "p90_s": percentile(latencies, 90),
            "p99_s": percentile(latencies, 99), "mean_s": statistics.fmean(latencies), "errors": errors,
            "answers": {q: sorted(a) for q, a in answers.items()}}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "topologies/examples/latent_chain.yaml"))
    parser.add_argument("--input", default=str(ROOT / "topologies/examples/questions.jsonl"))
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--concurrency", default="1,4", help="comma-separated client counts; the first is the base")
    parser.add_argument("--window-ms", type=float, default=10.0, help="the gateway's batch collection window")
    parser.add_argument("--unbatched", action="store_true", help="also run the highest concurrency with no window")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.concurrency.split(",")]
    spec = load_spec(args.spec)
    questions = read_jsonl_questions(args.input)[0]
    service = GatewayService(spec, build_plan(spec), run_name="gateway-load", batch_window_s=args.window_ms / 1000)
    service.start()
    server = GatewayServer(service, "127.0.0.1", 0).start()
    try:
        with GatewayClient(server.address, timeout=3600) as c:
            c.solve(questions[0])  # warm-up: first calls pay one-off costs
        results = [{**load(server.address, questions, args.requests, n), "window_ms": args.window_ms}
                   for n in levels]
        if args.unbatched:
            service.set_batch_window(0.0)
            results.append({**load(server.address, questions, args.requests, max(levels)), "window_ms": 0.0})
    finally:
        server.stop(5)
        service.close()
    base = results[0]
    same = all(r["answers"] == base["answers"] and all(len(a) == 1 for a in r["answers"].values()) for r in results)
    print(f"{spec.name} on {spec.models[next(iter(spec.models))].ref}, batch_size {spec.run.batch_size}, "
          f"{args.requests} single-question requests per level; answers identical: {same}")
    for r in results:
        print(f"concurrency {r['concurrency']:>3}, window {r['window_ms']:g} ms: {r['requests_per_s']:.3f} req/s "
              f"({r['wall_s']:.1f} s); latency p50 {r['p50_s']:.2f} s, p90 {r['p90_s']:.2f} s, p99 {r['p99_s']:.2f} s; "
              f"{r['questions_per_group']:.2f} questions per batch; errors {len(r['errors'])}; "
              f"throughput x{r['requests_per_s'] / base['requests_per_s']:.2f}, "
              f"p50 latency x{r['p50_s'] / base['p50_s']:.2f} vs the first line")
    if args.json:
        args.json.write_text(json.dumps({"spec": spec.name, "window_ms": args.window_ms, "identical": same,
                                         "levels": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
