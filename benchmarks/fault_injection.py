"""Faults injected into the main job's chain on its real model: after the first batch
finishes, one agent's actor is killed (by Ray, or its process by SIGKILL) or its process is
stopped (SIGSTOP, a hang no timeout reaches). Prints, per fault, whether every problem was
answered exactly once with the answers and token counts of an undisturbed run, how many
problems ran again, and what the recovery cost in time.

  python benchmarks/fault_injection.py [--spec SPEC] [--problems N] [--batch-size B]
                                       [--faults ray_kill,sigkill,sigstop] [--agent critic]
                                       [--step-timeout S] [--json PATH]
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

from latentray.runtime.engine.run import run_spec  # noqa: E402  (runtime first: sets the zero-copy flag)
from latentray.runtime.engine.questions import read_jsonl_questions  # noqa: E402
from latentray.topologies import build_plan, load_spec  # noqa: E402


def inject(fault: str, agent: str, run_name: str):
    """An on_batch hook that injects `fault` into `agent`'s actor once, after a batch finished."""
    import ray

    done_once = []

    def on_batch(done):
        if done_once or not done.indices:
            return
        pid = next(s["pid"] for s in done.step_stats if s["agent"] == agent)
        if fault == "ray_kill":
            ray.kill(ray.get_actor(f"{run_name}/{agent}"), no_restart=False)
        else:
            os.kill(pid, signal.SIGKILL if fault == "sigkill" else signal.SIGSTOP)
        done_once.append(pid)
    return on_batch


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", default=str(ROOT / "topologies/examples/latent_chain.yaml"))
    p.add_argument("--problems", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--faults", default="ray_kill,sigkill,sigstop")
    p.add_argument("--agent", default="critic")
    p.add_argument("--step-timeout", type=float, default=30.0,
                   help="limits.step_timeout_s: a hang is found after it x (steps + 1) + 5 s without progress")
    p.add_argument("--json")
    args = p.parse_args(argv)

    spec = load_spec(args.spec)
    spec = spec.model_copy(update={"run": spec.run.model_copy(update={"batch_size": args.batch_size}),
                                   "limits": spec.limits.model_copy(update={"step_timeout_s": args.step_timeout})})
    base, _, _ = read_jsonl_questions(str(ROOT / "topologies/examples/questions.jsonl"))
    questions = [base[i % len(base)] + ("" if i < len(base) else f" (case {i})") for i in range(args.problems)]
    plan = build_plan(spec)
    clean = run_spec(spec, plan, questions, run_name="faults-clean")
    print(f"undisturbed: {len(questions)} problems, run {clean.run_s:.1f} s, failed {len(clean.failed)} "
          f"{sorted(set(clean.failed.values()))}")
    rows = []
    for fault in args.faults.split(","):
        name = f"faults-{fault.replace('_', '-')}"
        r = run_spec(spec, plan, questions, run_name=name, on_batch=inject(fault, args.agent, name))
        # every problem's answer made once: the answering steps' rows over the run's kept stats
        answered_rows = sum(s["rows"] for s in r.steps if s["step"] in plan.answer_steps)
        same = r.answers == clean.answers and r.tokens == clean.tokens
        row = {"fault": fault, "agent": args.agent, "problems": len(questions), "failed": len(r.failed),
               "problems_rerun": r.retries, "identical_to_undisturbed": same,
               "answers_made": answered_rows, "failure_reasons": sorted(set(r.failed.values())), "run_s": round(r.run_s, 1),
               "undisturbed_run_s": round(clean.run_s, 1), "slowdown": round(r.run_s / clean.run_s, 2)}
        rows.append(row)
        print(f"{fault:9s} into {args.agent}: answered {len(questions) - len(r.failed)}/{len(questions)}, "
              f"identical to undisturbed: {same}, answers made {answered_rows}, problems run again {r.retries}, "
              f"run {r.run_s:.1f} s ({r.run_s / clean.run_s:.2f}x undisturbed)"
              + (f"; failed: {sorted(set(r.failed.values()))}" if r.failed else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
