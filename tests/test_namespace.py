"""Installed, latentray is `latentray.*` only: its wheel holds no top-level `agents`,
`channels`, `runtime` or `topologies`, and it installs beside another package that owns a
top-level `agents` (as the OpenAI Agents SDK does), both importable in one process.
`python -m latentray` is the `latentray` command."""
import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STUB_PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "other-agents"
version = "1.0"

[tool.setuptools]
packages = ["agents"]
"""


def pip(*args, cwd=None):
    # without build isolation when setuptools is here: no package index needed
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    proc = subprocess.run([sys.executable, "-m", "pip", *args, *isolation, "--no-deps", "-q"], cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel, built from a copy of the tracked files (a build writes into its source tree)."""
    import shutil

    out, source = tmp_path_factory.mktemp("wheel"), tmp_path_factory.mktemp("source") / "latentray"
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in tracked:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    pip("wheel", "-w", str(out), str(source))
    (built,) = out.glob("latentray-*.whl")
    return built


def test_the_wheel_holds_only_the_latentray_namespace(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if ".dist-info/" not in n} == {"latentray"}
    for shipped in ("latentray/__main__.py", "latentray/agents/agent.py", "latentray/runtime/cli.py",
                    "latentray/topologies/examples/latent_chain.yaml",
                    "latentray/runtime/engine/grafana/latentray.json"):
        assert shipped in names, shipped


def test_it_installs_beside_another_top_level_agents_package(wheel, tmp_path):
    stub = tmp_path / "other"
    (stub / "agents").mkdir(parents=True)
    (stub / "agents" / "__init__.py").write_text("OWNER = 'another library'\n")
    (stub / "pyproject.toml").write_text(STUB_PYPROJECT)
    site = tmp_path / "site"
    pip("install", "--target", str(site), str(wheel))
    pip("install", "--target", str(site), str(stub))
    code = ("import agents, latentray.agents.agent as agent, latentray.runtime.cli as cli; "
            "assert agents.OWNER == 'another library', agents.__file__; print(agent.__file__); "
            "print(cli.parser().prog)")
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    where, prog = proc.stdout.split()
    assert Path(where).is_relative_to(site) and prog == "latentray"


def test_python_dash_m_latentray_is_the_command():
    proc = subprocess.run([sys.executable, "-m", "latentray", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: latentray")
    assert all(command in proc.stdout for command in ("run", "eval", "serve", "grafana"))


def test_every_import_of_ours_names_the_namespace():
    """One name per module: an import of a bare `agents...` would load a second copy of it
    in a checkout (its registries and classes apart from the first)."""
    import ast

    bare = []
    for path in ROOT.rglob("*.py"):
        if any(part.startswith(".") or part in ("build", "__pycache__") for part in path.relative_to(ROOT).parts):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            bare += [f"{path.relative_to(ROOT)}: {n}" for n in names
                     if n.split(".")[0] in ("agents", "channels", "runtime", "topologies")]
    assert not bare, bare
