"""What running on Ray costs: the same spec, problems and batches through the engine on Ray
actors, and through the same Agent objects called in order in one process (no actors, no
object store, no validation). Both must give the same answers; the ratio is the runtime's
overhead (actor calls, message hand-offs, validation), or its gain where agents pipeline
across batches on separate cores.

  python benchmarks/overhead.py [--spec SPEC] [--input Q.jsonl] [--batch-size 2] [--json PATH]

The in-process run is timed with torch on 1 thread (what each Ray actor with num_cpus 1
gets) and with every core.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# runtime first: it sets the zero-copy flag
from latentray.runtime.engine.agent_configs import agent_configs_for  # noqa: E402
from latentray.runtime.engine.run import run_spec  # noqa: E402
from latentray.runtime.engine.questions import read_jsonl_questions  # noqa: E402
from latentray.topologies import build_plan, load_spec  # noqa: E402


def in_process(spec, plan, questions: list) -> tuple:
    """(answers, seconds after loading) running the plan's steps in order in this process."""
    import torch

    from latentray.agents.agent import Agent
    from latentray.agents.fingerprint import model_fingerprint
    from latentray.agents.models import load_model
    from latentray.channels.aggregate import aggregate_messages

    agents = {}
    for model_id, m in spec.models.items():
        model, tok, _ = load_model(m.ref, dtype=m.dtype, device=m.device, seed=m.seed or 0)
        fp = model_fingerprint(model, tok)
        names = [a for a in plan.agents if spec.agents[a].model == model_id]
        for name, cfg in agent_configs_for(names, spec).items():
            agents[name] = Agent(cfg, model, tok, fp)
    answers = []
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(questions), spec.run.batch_size):
            batch, out = questions[i:i + spec.run.batch_size], {}
            for step in plan.steps:
                inbox = [out[e.src] for e in step.inputs]
                agent = agents.get(step.agent)
                if step.action == "text":
                    out[step.id] = agent.step(batch, inbox, action="text", kv_merge=step.kv_merge)
                elif step.action == "aggregate":
                    out[step.id] = aggregate_messages(inbox, step.aggregate, step.agent, {})
                else:
                    out[step.id] = agent.step(batch, inbox, action="latent", emit=step.emit, scope=step.kv_scope,
                                              kv_merge=step.kv_merge)
            answers += out[plan.answer_steps[0]].texts
    return answers, time.perf_counter() - t0


def main(argv=None) -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "topologies/examples/latent_chain.yaml"))
    parser.add_argument("--input", default=str(ROOT / "topologies/examples/questions.jsonl"))
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    spec = load_spec(args.spec)
    spec = spec.model_copy(update={"run": spec.run.model_copy(update={"batch_size": args.batch_size})})
    plan = build_plan(spec)
    questions, _, _ = read_jsonl_questions(args.input)
    ray_result = run_spec(spec, plan, questions, run_name="overhead")
    cores = torch.get_num_threads()
    torch.set_num_threads(1)
    one_answers, one_s = in_process(spec, plan, questions)
    torch.set_num_threads(cores)
    all_answers, all_s = in_process(spec, plan, questions)
    same = ray_result.answers == one_answers == all_answers
    rows = {"questions": len(questions), "batch_size": args.batch_size, "agents": len(plan.agents),
            "ray_s": ray_result.run_s, "one_process_1_thread_s": one_s, f"one_process_{cores}_threads_s": all_s,
            "answers_identical": same}
    print(f"{len(questions)} questions, batch {args.batch_size}, {len(plan.agents)} agents, "
          f"{spec.models[next(iter(spec.models))].ref}; answers identical: {same}")
    print(f"Ray actors (1 thread each): {ray_result.run_s:.2f} s")
    print(f"one process, 1 thread:      {one_s:.2f} s  -> Ray / one process = {ray_result.run_s / one_s:.2f}x")
    print(f"one process, {cores} threads:     {all_s:.2f} s  -> Ray / one process = {ray_result.run_s / all_s:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
