"""The dependency rules of the design: the plain agent runs without Ray, and topologies
import nothing of ours."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules_after_import(statement: str) -> set:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_plain_agent_does_not_import_ray():
    mods = _modules_after_import("import agents.agent, agents.loading, agents.tiny_models")
    assert "ray" not in mods
    assert not any(m.split(".")[0] == "runtime" for m in mods)


def test_topologies_import_nothing_of_ours():
    mods = _modules_after_import("import topologies, topologies.loader")
    ours = {m.split(".")[0] for m in mods} & {"agents", "channels", "runtime"}
    assert ours == set(), ours
