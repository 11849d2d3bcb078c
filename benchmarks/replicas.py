"""Throughput with 1, 2 and 4 replicas of a chain's bottleneck agent, measured in one run,
and the measured profile the scaling model (benchmarks/scaling_model.py) is validated with.

    python benchmarks/replicas.py [--model tiny:qwen3-128] [--problems 24] [--replicas 1,2,4]
                                  [--json out/replicas.json]

The chain: a thinker (latent steps, sends its KV working memory) then an answerer that
decodes text, the slower of the two, whose replicas vary. Each configuration starts its
actors, runs one warm-up unit, then the problems; problems/s counts from the first step
submitted to the last answer (models loaded before). On this machine every replica is a
process with one torch thread on a shared CPU: more busy replicas than cores slow each
other down, which the figures show and the model's --cores-per-node accounts for.
--json writes the measured runs in the format of `scaling_model.py --validate`, each with
the profile measured on the 1-replica run: per-step compute seconds, message bytes, and
the driver's per-call overhead (a round trip to an idle actor).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPEC = """\
version: 1
name: bench-replicas
models:
  base: {{ref: "{model}"}}
agents:
  thinker: {{model: base, role: "Think it through.\\nProblem: {{question}}", latent_steps: {latent}}}
  answerer: {{model: base, role: "Answer.\\nProblem: {{question}}", output: text, max_new_tokens: {tokens}}}
topology: {{type: chain, order: [thinker, answerer]}}
channels: {{kind: kv}}
run: {{batch_size: {batch}}}
"""


def spec_for(model: str, replicas: int, batch: int, latent: int, tokens: int):
    import yaml

    from topologies.loader import parse_spec

    spec = parse_spec(yaml.safe_load(SPEC.format(model=model, batch=batch, latent=latent, tokens=tokens)))
    answerer = spec.agents["answerer"].model_copy(update={"replicas": replicas})
    return spec.model_copy(update={"agents": {**spec.agents, "answerer": answerer}})


def call_overhead_s(ray, samples: int = 50) -> float:
    """Median round trip of a call to an idle actor: what the driver pays per step."""
    @ray.remote(num_cpus=0)
    class Idle:
        def ping(self):
            return 0

    idle = Idle.remote()
    ray.get(idle.ping.remote())
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        ray.get(idle.ping.remote())
        times.append(time.perf_counter() - t0)
    ray.kill(idle)
    return statistics.median(times)


def profile_of(done: list, spec, plan, problems: int, overhead_s: float) -> dict:
    """The scaling model's profile from a measured run's step stats (BatchDone.step_stats)."""
    stats = [s for d in done for s in d.step_stats]
    steps = []
    for step in plan.steps:
        mine = [s for s in stats if s["step"] == step.id]
        sent = [e["bytes"] for s in stats for e in s["inbox"] if e["src"] == step.id]
        steps.append({"id": step.id, "agent": step.agent,
                      "compute_s": statistics.median(s["compute_s"] for s in mine),
                      "inputs": [e.src for e in step.inputs],
                      "message_bytes": statistics.mean(sent) if sent else 0.0})
    return {"name": f"{spec.name} on {spec.models['base'].ref}, measured", "batch_size": spec.run.batch_size,
            "problems": problems, "max_in_flight": "auto", "dispatch_overhead_s": overhead_s,
            "agents": {a: {"replicas": 1, "gpus": 1} for a in plan.agents}, "steps": steps}


def measure(model: str, replicas: int, questions: list, batch: int, latent: int, tokens: int) -> tuple:
    from topologies import build_plan

    spec = spec_for(model, replicas, batch, latent, tokens)
    plan = build_plan(spec)
    warm = questions[:batch]
    # one session: warm-up unit, then the measured problems on the same warm actors
    from runtime.engine.session import RunSession

    session = RunSession(spec, plan, f"bench-r{replicas}").start()
    try:
        list(session.run(warm))
        t0 = time.perf_counter()
        done = list(session.run(questions))
        elapsed = time.perf_counter() - t0
    finally:
        session.close()
    answered = sum(len(d.indices) for d in done)
    assert answered == len(questions), f"{answered} of {len(questions)} answered"
    return answered / elapsed, done, spec, plan


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny:qwen3-128")
    parser.add_argument("--problems", type=int, default=24)
    parser.add_argument("--replicas", default="1,2,4")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--latent-steps", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from runtime.engine.ray_setup import ensure_ray

    counts = [int(x) for x in args.replicas.split(",")]
    ray = ensure_ray(num_cpus=max(counts) + 2)
    questions = [f"What is {i} plus {2 * i + 1}? Explain briefly." for i in range(args.problems)]
    overhead = call_overhead_s(ray)
    rows, measured, profile = [], [], None
    for k in counts:
        rate, done, spec, plan = measure(args.model, k, questions, args.batch_size, args.latent_steps,
                                         args.max_new_tokens)
        if profile is None:  # the first (fewest replicas) run: each step as it runs alone on its core
            profile = profile_of(done, spec, plan, args.problems, overhead)
        rows.append((k, rate))
        print(f"answerer replicas {k}: {rate:.2f} problems/s", flush=True)
    base = rows[0][1]
    print(f"\n{args.model}, {args.problems} problems, batch {args.batch_size}, {os.cpu_count()} cores")
    print(f"{'replicas':>8} {'problems/s':>11} {'vs 1':>6}")
    for k, rate in rows:
        print(f"{k:>8} {rate:>11.2f} {rate / base:>6.2f}")
    for k, rate in rows:
        measured.append({"replicas": {"thinker": 1, "answerer": k}, "problems_per_s": rate, "profile": profile,
                         "cluster": {"nodes": 1, "cores_per_node": os.cpu_count(), "gpus_per_node": 64},
                         "placement": "pack"})
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(measured, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
