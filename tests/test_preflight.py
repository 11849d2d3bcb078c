"""One pre-flight stage: `validate` reports everything `run` would refuse, all at once, and
each check names its field and fix before any actor starts."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from latentray.runtime.cli import main
from latentray.runtime.engine.preflight import preflight, problems
from latentray.topologies import build_plan, load_spec
from latentray.topologies.errors import SpecError

ROOT = Path(__file__).resolve().parents[1]


def _spec_file(tmp_path, edit) -> Path:
    data = yaml.safe_load((ROOT / "topologies/examples/hub_mixed_tiny.yaml").read_text())
    edit(data)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _two_problems(data):
    data["channels"]["codecs"] = "/nonexistent/parts"  # codec parts not fitted
    data["channels"]["transport"] = "rdt"
    data["channels"]["rdt_backend"] = "nccl"  # and no agent asks for a GPU
    data.setdefault("limits", {})["object_store_bytes"] = 100 * 2**20  # fine for a local Ray


def test_validate_lists_every_problem_run_would_refuse(tmp_path, capsys):
    path = _spec_file(tmp_path, _two_problems)
    assert main(["validate", str(path)]) == 2
    out = capsys.readouterr()
    refused = [line for line in out.out.splitlines() if line.startswith("NOT READY")]
    assert [line.split(")")[0] for line in refused] == ["NOT READY (transports", "NOT READY (codecs"]
    assert "channels.rdt_backend" in refused[0] and "rdt_backend: gloo" in refused[0]
    assert "(2 problem(s) above)" in out.err


def test_run_refuses_the_first_of_them_before_any_actor(tmp_path):
    spec = load_spec(_spec_file(tmp_path, _two_problems))
    with pytest.raises(SpecError, match="rdt backend 'nccl' moves tensors between GPUs"):
        preflight(spec, build_plan(spec))


def test_validate_and_run_agree_on_a_cluster_address(tmp_path):
    """A store size only a Ray the run starts can honour: refused when joining a cluster."""
    spec = load_spec(_spec_file(tmp_path, lambda d: d.setdefault("limits", {}).update(
        object_store_bytes=100 * 2**20)))
    plan = build_plan(spec)
    names = [name for name, _ in problems(spec, plan, "127.0.0.1:6379")]
    assert "limits" in names and "limits" not in [name for name, _ in problems(spec, plan, None)]


def test_a_clean_spec_has_no_problems():
    spec = load_spec(ROOT / "topologies/examples/mesh.yaml")
    spec = spec.model_copy(update={"models": {k: m.model_copy(update={"ref": "tiny:qwen3-64"})
                                              for k, m in spec.models.items()}})
    assert problems(spec, build_plan(spec)) == []
