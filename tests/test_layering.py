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
    mods = _modules_after_import("import agents.agent, agents.models")
    assert "ray" not in mods
    assert not any(m.split(".")[0] == "runtime" for m in mods)


def test_topologies_import_nothing_of_ours():
    mods = _modules_after_import("import topologies, topologies.loader")
    ours = {m.split(".")[0] for m in mods} & {"agents", "channels", "runtime"}
    assert ours == set(), ours


def test_driver_imports_ray_with_zero_copy_on():
    """Ray reads the flag once, at import: the runtime must set it before any module of
    ours imports ray (agents.actor does, through runtime.engine.run)."""
    code = ("import os; os.environ.pop('RAY_ENABLE_ZERO_COPY_TORCH_TENSORS', None); "
            "import runtime.engine.run; from ray._private import ray_constants as c; "
            "print(c.RAY_ENABLE_ZERO_COPY_TORCH_TENSORS)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
