"""The OpenAI-compatible endpoint against the other ways in, on the same warm actors: one
question's latency through what latentray.Session.run calls (run_spec on a started run
session: here the service's own), the gRPC gateway and POST
/v1/chat/completions (plain, and streamed to its last chunk), then the endpoint's requests/s
with 1 and 4 concurrent clients. Runs the example chain on its real model by default. The
paths take turns, one call each per round, so a change in the machine's speed hits them
alike; prints medians and ratios measured in this one run. The answers must be the same on
every path.

  python benchmarks/openai_endpoint.py [--spec SPEC] [--repeats 5] [--requests 12] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import openai  # noqa: E402

import latentray  # noqa: E402
from latentray.runtime.engine.run import run_spec  # noqa: E402
from latentray.runtime.gateway.admission import Admission  # noqa: E402
from latentray.runtime.gateway.client import GatewayClient  # noqa: E402
from latentray.runtime.gateway.openai_server import OpenAIServer  # noqa: E402
from latentray.runtime.gateway.server import GatewayServer  # noqa: E402
from latentray.runtime.gateway.service import GatewayService  # noqa: E402
from latentray.topologies import build_plan  # noqa: E402

QUESTION = "What is the capital of France?"


def timed(paths: dict, repeats: int) -> dict:
    """{name: (median seconds, the answers seen)}: after one warm-up call each, `repeats`
    rounds of one call per path."""
    for call in paths.values():
        call()
    seconds: dict = {name: [] for name in paths}
    answers: dict = {name: set() for name in paths}
    for _ in range(repeats):
        for name, call in paths.items():
            t0 = time.perf_counter()
            answers[name].add(call())
            seconds[name].append(time.perf_counter() - t0)
    return {name: (statistics.median(seconds[name]), answers[name]) for name in paths}


def questions() -> list:
    lines = (ROOT / "topologies/examples/questions.jsonl").read_text().splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()]


def throughput(url: str, model: str, clients: int, asked: list) -> dict:
    """requests/s and latencies of `asked` sent by `clients` concurrent clients, one each at a time."""
    def ask(question):
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=3600)
        t0 = time.perf_counter()
        reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}])
        return time.perf_counter() - t0, reply.choices[0].message.content

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        done = list(pool.map(ask, asked))
    wall = time.perf_counter() - t0
    latencies = sorted(s for s, _ in done)
    return {"clients": clients, "requests": len(asked), "wall_s": wall, "req_per_s": len(asked) / wall,
            "p50_s": statistics.median(latencies), "answers": {q: a for q, (_, a) in zip(asked, done)}}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "topologies/examples/latent_chain.yaml"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--requests", type=int, default=12, help="requests per concurrency level")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    spec = latentray.load_spec(args.spec)
    messages = [{"role": "user", "content": QUESTION}]
    plan = build_plan(spec)
    service = GatewayService(spec, plan, run_name="openai-bench").start()
    admission = Admission(spec.limits.max_concurrent_requests)
    grpc_server = GatewayServer(service, "127.0.0.1", 0, admission=admission).start()
    http = OpenAIServer(service, "127.0.0.1", 0, admission=admission).start()
    try:
        with GatewayClient(grpc_server.address, timeout=3600) as client:
            oa = openai.OpenAI(base_url=http.url, api_key="unused", max_retries=0, timeout=3600)
            rows = timed({
                "latentray.Session.run": lambda: run_spec(spec, plan, [QUESTION], session=service.session).answers[0],
                "gRPC gateway Solve": lambda: client.solve(QUESTION)["answers"][0]["answer"],
                "POST /v1/chat/completions": lambda: oa.chat.completions.create(
                    model=spec.name, messages=messages).choices[0].message.content,
                "POST /v1/chat/completions, streamed": lambda: "".join(
                    c.choices[0].delta.content or "" for c in oa.chat.completions.create(
                        model=spec.name, messages=messages, stream=True) if c.choices),
            }, args.repeats)
        asked = [questions()[i % len(questions())] for i in range(args.requests)]
        levels = [throughput(http.url, spec.name, n, asked) for n in (1, 4)]
    finally:
        http.stop(5)
        grpc_server.stop(5)
        service.close()
    base = rows["latentray.Session.run"][0]
    answers = set().union(*(a for _, a in rows.values()))
    print(f"{spec.name} on {spec.models[next(iter(spec.models))].ref}, one question, median of {args.repeats}; "
          f"answers identical on every path: {len(answers) == 1} ({sorted(answers)[0]!r})")
    for name, (median, _) in rows.items():
        print(f"{name:<40} {median:7.3f} s   x{median / base:.2f} the session's")
    same = levels[0]["answers"] == levels[1]["answers"]
    print(f"throughput, {args.requests} requests per level; answers identical at both levels: {same}")
    for level in levels:
        print(f"{level['clients']} client(s): {level['req_per_s']:.3f} req/s, p50 {level['p50_s']:.2f} s, "
              f"x{level['req_per_s'] / levels[0]['req_per_s']:.2f} one client's req/s")
    if args.json:
        args.json.write_text(json.dumps({"spec": spec.name, "median_s": {k: v[0] for k, v in rows.items()},
                                         "levels": [{k: v for k, v in lv.items() if k != "answers"}
                                                    for lv in levels]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
