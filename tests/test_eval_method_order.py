"""`latentray eval` runs its methods in any order: the local Ray it starts is sized for the
largest method, not the first (single needs one actor, the example's latent chain four)."""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest
import yaml

from latentray.runtime.commands.eval import prepare_methods
from latentray.runtime.engine.preflight import needed_resources
from latentray.runtime.eval.runner import METHODS, with_method
from latentray.topologies import build_plan, load_spec

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def chain_spec(tmp_path):
    """The main job's four-agent chain on a tiny model, the three before the judger in one
    actor: latent needs two actors, single (the judger alone) one, so the sizes still differ
    with two process starts fewer."""
    data = yaml.safe_load((ROOT / "topologies/examples/latent_chain.yaml").read_text())
    for model in data["models"].values():
        model["ref"] = "tiny:qwen3-64"
    for name, agent in data["agents"].items():
        agent.update(latent_steps=1, max_new_tokens=2)
        if name != "judger":
            agent["actor"] = "team"
    data.get("run", {}).pop("inputs", None)
    path = tmp_path / "chain.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("order", list(itertools.permutations(METHODS)), ids=lambda o: ",".join(o))
def test_the_local_ray_is_sized_for_the_largest_method_whatever_the_order(chain_spec, order, monkeypatch):
    asked = {}
    monkeypatch.setattr("latentray.runtime.engine.ray_setup.ensure_ray", lambda **kw: asked.update(kw))
    spec = load_spec(chain_spec)
    prepare_methods(spec, list(order), Namespace(batch_size=None, max_new_tokens=None, address=None, verbose=False))
    sizes = {m: needed_resources(with_method(spec, m), build_plan(with_method(spec, m)))["CPU"] for m in METHODS}
    assert sizes["single"] < sizes["latent"]  # the order matters only because the sizes differ
    assert asked["num_cpus"] == max(sizes.values())


def test_single_then_latent_runs_on_a_ray_the_eval_starts(chain_spec, tmp_path):
    """A fresh process, so the eval starts its own Ray (the shared test Ray would hide it)."""
    data = tmp_path / "qa.jsonl"
    data.write_text(json.dumps({"q": "What is 1 + 1?", "a": "2"}) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run([sys.executable, "-m", "latentray", "eval", str(chain_spec), "-d", str(data),
                           "--field", "question=q", "--field", "answer=a", "--methods", "single,latent",
                           "-o", str(tmp_path / "ev"), "--quiet"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[eval] single: " in proc.stderr and "[eval] latent: " in proc.stderr
