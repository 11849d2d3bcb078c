"""Print what the answering agent of each method (single, text, latent) reads on one problem.

    python scripts/show_prompts.py topologies/examples/latent_chain.yaml --dataset arc-easy --index 0

It runs the spec's agents in this process, through the same Agent, prompt layout and inbox
code the actors use: the text method's earlier agents really decode, and the answering
agent's prompt is rendered from their messages as its actor would render it. For the
latent method the working memory is not text: its text parts are printed as rendered,
and each agent's latent thoughts as one `<N latent thoughts>` line. docs/evaluation.md
shows the output for ARC-Easy's first problem. A chain topology of one model only.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from latentray.agents.agent import Agent  # noqa: E402
from latentray.agents.fingerprint import model_fingerprint  # noqa: E402
from latentray.agents.inbox import merge_inbox  # noqa: E402
from latentray.agents.models import load_model  # noqa: E402
from latentray.runtime.codecs.fit import model_kwargs  # noqa: E402
from latentray.runtime.engine.agent_configs import agent_configs_for  # noqa: E402
from latentray.runtime.eval.datasets import load_problems  # noqa: E402
from latentray.runtime.eval.runner import problem_inputs, with_method  # noqa: E402
from latentray.topologies import build_plan, load_spec  # noqa: E402


def rendered(agent: Agent, question, team_text=None, continuing=False) -> str:
    before, after = agent.render(question, team_text, continuing=continuing)
    return agent.tokenizer.decode(before + after)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("spec")
    p.add_argument("--dataset", "-d", required=True)
    p.add_argument("--index", type=int, default=0, help="which problem (0 = the first)")
    args = p.parse_args()
    spec = load_spec(args.spec)
    if spec.topology.type != "chain" or len({a.model for a in spec.agents.values()}) != 1:
        sys.exit("show_prompts: a chain of agents on one model only")
    problem = load_problems(args.dataset, limit=args.index + 1)[args.index]
    question = problem_inputs([problem])[0]
    ref = spec.models[next(iter(spec.agents.values())).model].ref
    model, tokenizer, _ = load_model(**model_kwargs(spec, ref))
    fingerprint = model_fingerprint(model, tokenizer)

    def agents_for(method):
        spec_m = with_method(spec, method)
        plan = build_plan(spec_m)
        configs = agent_configs_for(plan.agents, spec_m, latent=method == "latent")
        return plan, {n: Agent(c, model, tokenizer, fingerprint) for n, c in configs.items()}

    plan, agents = agents_for("single")
    answer = plan.steps[-1]
    print(f"=== single: {answer.agent} alone ===\n{rendered(agents[answer.agent], question)}")

    plan, agents = agents_for("text")
    sent = {}
    for step in plan.steps[:-1]:
        inbox = [sent[e.src] for e in step.inputs]
        sent[step.id] = agents[step.agent].step([question], inbox, action=step.action, emit=step.emit)
    final = plan.steps[-1]
    box = merge_inbox([sent[e.src] for e in final.inputs], final.agent)
    print(f"\n=== text: {final.agent}, reading {', '.join(e.src for e in final.inputs)} ===")
    print(rendered(agents[final.agent], question, box.texts[0] if box.texts else None))

    plan, agents = agents_for("latent")
    print(f"\n=== latent: {plan.steps[-1].agent}, continuing the working memory ===")
    for i, step in enumerate(plan.steps):
        print(rendered(agents[step.agent], question, continuing=i > 0), end="")
        steps = agents[step.agent].config.latent_steps
        if steps and step is not plan.steps[-1]:
            print(f"<{steps} latent thoughts of {step.agent}>")
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
