"""Throughput with 1, 2 and 4 replicas of a topology's bottleneck agent, measured in one run,
and the measured profile the scaling model (benchmarks/scaling_model.py) is validated with.

    python benchmarks/replicas.py [--spec topologies/examples/latent_chain.yaml] [--model REF]
        [--problems 24] [--replicas 1,2,4] [--batch-size 2] [--max-new-tokens 24] [--json PATH]

The spec (default: the example 4-agent latent chain) runs first with one replica of every
agent; its bottleneck is the agent with the most compute per unit, whose replicas then vary.
Each configuration starts its actors, runs one warm-up unit, then the problems on the same
warm actors; problems/s counts from the first step submitted to the last answer. On this
machine every replica is a process with one torch thread on a shared CPU: more busy
replicas than cores slow each other down, which the figures show and the scaling model's
--cores-per-node accounts for. --json writes the measured runs in the format of
`scaling_model.py --validate`, each with the profile measured on the 1-replica actors with
one unit at a time (each step alone on a core): per-step compute seconds, message bytes, and
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


def spec_for(path: Path, model: str | None, batch: int, tokens: int | None, replicas: dict):
    """The spec with its model swapped, batch and answer length set, and `replicas` per agent."""
    from latentray.topologies import load_spec

    spec = load_spec(path)
    models = {k: m.model_copy(update={"ref": model}) for k, m in spec.models.items()} if model else spec.models
    agents = {}
    for name, a in spec.agents.items():
        update = {"replicas": replicas.get(name, 1)}
        if tokens and a.output == "text":
            update["max_new_tokens"] = tokens
        agents[name] = a.model_copy(update=update)
    run = spec.run.model_copy(update={"batch_size": batch, "max_in_flight": "auto"})
    return spec.model_copy(update={"models": models, "agents": agents, "run": run})


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
    refs = sorted({m.ref for m in spec.models.values()})
    return {"name": f"{spec.name} on {', '.join(refs)}, measured", "batch_size": spec.run.batch_size,
            "problems": problems, "max_in_flight": "auto", "dispatch_overhead_s": overhead_s,
            "agents": {a: {"replicas": 1, "gpus": 1} for a in plan.agents}, "steps": steps}


def measure(spec, questions: list, profile_units: int = 0) -> tuple:
    """(problems/s, the BatchDones of a profiling pass) of the questions on warm actors,
    after one warm-up unit. profile_units > 0: first that many units one at a time, so each
    step's compute time is its time alone on a core, as the scaling model takes it."""
    from latentray.runtime.engine.session import RunSession
    from latentray.topologies import build_plan

    plan = build_plan(spec)
    session = RunSession(spec, plan, f"bench-{'-'.join(str(spec.agents[a].replicas) for a in plan.agents)}")
    try:
        session.start()
        list(session.run(questions[:spec.run.batch_size]))
        alone = []
        if profile_units:
            limit, session.max_in_flight = session.max_in_flight, 1
            alone = list(session.run(questions[:spec.run.batch_size * profile_units]))
            session.max_in_flight = limit
        t0 = time.perf_counter()
        done = list(session.run(questions))
        elapsed = time.perf_counter() - t0
    finally:
        session.close()
    answered = sum(len(d.indices) for d in done)
    assert answered == len(questions), f"{answered} of {len(questions)} answered"
    return answered / elapsed, alone


def bottleneck(profile: dict) -> str:
    work: dict = {}
    for step in profile["steps"]:
        work[step["agent"]] = work.get(step["agent"], 0.0) + step["compute_s"]
    return max(work, key=work.get)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "topologies/examples/latent_chain.yaml")
    parser.add_argument("--model", help="swap every model's ref for this one (default: the spec's)")
    parser.add_argument("--problems", type=int, default=24)
    parser.add_argument("--replicas", default="1,2,4", help="replica counts of the bottleneck agent")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=24, help="of the answering agent(s)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from latentray.runtime.engine.ray_setup import ensure_ray
    from latentray.topologies import build_plan

    counts = [int(x) for x in args.replicas.split(",")]
    base = spec_for(args.spec, args.model, args.batch_size, args.max_new_tokens, {})
    plan = build_plan(base)
    ray = ensure_ray(num_cpus=len(plan.agents) + max(counts) + 1)
    questions = [f"What is {i} plus {2 * i + 1}? Explain briefly." for i in range(args.problems)]
    overhead = call_overhead_s(ray)
    rate, alone = measure(base, questions, profile_units=4)
    profile = profile_of(alone, base, plan, args.problems, overhead)
    slow = bottleneck(profile)
    rows = [(1, rate)]
    print(f"1 replica each: {rate:.2f} problems/s; bottleneck {slow}", flush=True)
    for k in counts:
        if k == 1:
            continue
        rate, _ = measure(spec_for(args.spec, args.model, args.batch_size, args.max_new_tokens, {slow: k}), questions)
        rows.append((k, rate))
        print(f"{slow} replicas {k}: {rate:.2f} problems/s", flush=True)
    refs = ", ".join(sorted({m.ref for m in base.models.values()}))
    print(f"\n{base.name} on {refs}: {args.problems} problems, batch {args.batch_size}, {os.cpu_count()} cores; "
          f"per-unit compute: " + ", ".join(f"{s['agent']} {s['compute_s']:.3f} s" for s in profile["steps"]))
    print(f"{slow + ' replicas':>18} {'problems/s':>11} {'vs 1':>6}")
    for k, r in rows:
        print(f"{k:>18} {r:>11.2f} {r / rows[0][1]:>6.2f}")
    measured = [{"replicas": {**{a: 1 for a in plan.agents}, slow: k}, "problems_per_s": r, "profile": profile,
                 "cluster": {"nodes": 1, "cores_per_node": os.cpu_count(), "gpus_per_node": 64},
                 "placement": "pack"} for k, r in rows]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(measured, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
