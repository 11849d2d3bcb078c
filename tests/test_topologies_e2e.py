"""Every example spec end-to-end through Ray (its model swapped for a tiny one): answers come back, and the
message trace shows exactly the routing the plan promises (who received what, in which
round, how many messages per round)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from latentray.topologies import build_plan, load_spec

from helpers import with_model_ref
from test_codec_training import OPTIONS, facts

pytestmark = pytest.mark.ray
EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "topologies" / "examples").glob("*.yaml"))
QUESTIONS = ["What is 2 + 2?", "Name a prime number larger than ten, please."]


def small(spec):
    """Fewer latent steps and tokens, one actor per model, both questions in one batch; a
    middle layer sent becomes the tiny model's first (it has two)."""
    agents = {name: a.model_copy(update={"latent_steps": min(a.latent_steps, 2), "max_new_tokens": 4,
                                         "actor": f"model-{a.model}"})
              for name, a in spec.agents.items()}
    run = spec.run.model_copy(update={"batch_size": 2})
    channels = spec.channels
    if channels.hidden_layer != "last":
        channels = channels.model_copy(update={"hidden_layer": 1})
    return with_model_ref(spec.model_copy(update={"agents": agents, "run": run, "channels": channels}))


def expected_deliveries(plan) -> Counter:
    """(sender agent, receiving step, kind, round) for every edge of the plan."""
    return Counter((plan.step(e.src).agent, s.id, e.kind, s.round) for s in plan.steps for e in s.inputs)


def prepare_codecs(spec, plan, tmp_path):
    """Fit the codecs the spec names, or train a trained one for a few steps on small facts (the routing,
    not the codec's quality, is under test here)."""
    from latentray.channels.codecs import REGISTRY
    from latentray.runtime.codecs.fit import fit_codecs
    from latentray.runtime.codecs.train import train_codec

    quiet = dict(quiet=True, log=lambda _: None)
    if getattr(REGISTRY.get(spec.channels.codec), "trained", False):
        # a spec that reads soft tokens as tokens (codec_read nearest) needs the vocabulary output
        options = {**OPTIONS, "output": "vocabulary"} if spec.channels.codec_read == "nearest" else OPTIONS
        train_codec(spec, plan, spec.channels.codecs, steps=2, data=[str(facts(tmp_path / "facts.jsonl"))], batch=2,
                    options=options, **quiet)
    else:
        fit_codecs(spec, plan, spec.channels.codecs, **quiet)  # the codecs it names, if any


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_and_routes_as_planned(ray_session, path, tmp_path):
    from latentray.runtime.engine.run import run_spec
    from latentray.topologies.loader import with_codec_dir

    spec = with_codec_dir(small(load_spec(path)), Path("."), str(tmp_path / "codecs"))
    plan = build_plan(spec, str(path))
    prepare_codecs(spec, plan, tmp_path)
    result = run_spec(spec, plan, QUESTIONS, run_name=f"topo-{path.stem}")
    assert len(result.answers) == len(QUESTIONS) and all(isinstance(a, str) for a in result.answers)
    got = Counter((r["src"], r["dst"], r["kind"], r["round"]) for r in result.trace)
    assert got == expected_deliveries(plan)
    per_round = Counter(r["round"] for r in result.trace)
    assert dict(per_round) == plan.messages_per_round()
    assert all(r["bytes"] > 0 for r in result.trace)
    # Inbox order: each step received its messages in the order of its plan inputs.
    for step in plan.steps:
        senders = [r["src"] for r in result.trace if r["dst"] == step.id]
        assert senders == [plan.step(e.src).agent for e in step.inputs], step.id
