"""The dependency rules of the design, checked on the code itself (module names here leave
out the `latentray.` every import carries):
- the plain agent, and every module of agents/ and channels/ but the two that exist to
  talk to Ray (the actor wrapper, the rdt transport), import without Ray;
- topologies/ imports nothing of ours but the message kinds' names and properties;
- no module imports, at any depth or from inside a function, a module that imports it
  back: calls go one way.
"""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agents", "channels", "runtime", "topologies")
# The only modules of agents/ and channels/ that exist to talk to Ray.
RAY_MODULES = {"agents.actor", "channels.transports.rdt"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(package: str) -> list:
    return sorted(_module_name(p) for p in (ROOT / package).rglob("*.py"))


def _ours(name: str) -> str:
    return name.removeprefix("latentray.")


def _modules_after_import(statement: str) -> set:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return {_ours(m) for m in out.stdout.split()}


def test_plain_agent_does_not_import_ray():
    mods = _modules_after_import("import latentray.agents.agent, latentray.agents.models")
    assert "ray" not in mods
    assert not any(m.split(".")[0] == "runtime" for m in mods)


def test_agents_and_channels_import_without_ray():
    """Every module at once, in one process: any one of them pulling Ray in shows here."""
    mods = [m for p in ("agents", "channels") for m in _modules(p) if m not in RAY_MODULES]
    loaded = _modules_after_import("; ".join(f"import latentray.{m}" for m in mods))
    assert "ray" not in loaded, "a module of agents/ or channels/ imports Ray"


def test_the_kinds_import_neither_torch_nor_ray():
    mods = _modules_after_import("import latentray.channels.kinds")
    assert "torch" not in mods and "ray" not in mods


def test_topologies_import_nothing_of_ours_but_the_message_kinds():
    mods = _modules_after_import("import latentray.topologies, latentray.topologies.loader")
    ours = {m for m in mods if m.split(".")[0] in ("agents", "channels", "runtime")}
    assert all(m == "channels" or m.startswith("channels.kinds") or m == "channels.errors" for m in ours), ours
    assert "torch" not in mods and "ray" not in mods


def _imports(path: Path, module: str, modules) -> set:
    """Our modules that `module` imports anywhere in its file, inside functions too.
    `from pkg import mod` is an import of pkg.mod (as `import pkg.mod` is), not of pkg."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(_ours(a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _ours(node.module or "")
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    return {m for m in found if m in modules and m != module}


def import_graph() -> dict:
    modules = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    return {m: _imports(p, m, modules) for m, p in modules.items()}


def _cycles(graph: dict) -> list:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle_in_any_package():
    assert _cycles(import_graph()) == []


def test_the_circle_finder_finds_circles():
    """The check above can fail: a circle hidden inside a function is found."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    graph = import_graph()
    graph["runtime.engine.steps"] = graph["runtime.engine.steps"] | {"runtime.engine.scheduler"}
    assert ["runtime.engine.scheduler", "runtime.engine.steps"] in _cycles(graph)


def test_package_modules_are_found():
    """A walk that found nothing would pass the circle test for no reason."""
    graph = import_graph()
    assert len(graph) > 100
    assert "runtime.engine.steps" in graph["runtime.engine.scheduler"]
    assert "runtime.engine.session" in graph["runtime.gateway.service"]


@pytest.mark.parametrize("package", ["runtime.engine", "runtime.commands", "runtime.codecs", "runtime.eval",
                                     "runtime.gateway", "runtime.jobs", "channels.kinds"])
def test_each_room_says_what_it_owns(package):
    init = ROOT / package.replace(".", "/") / "__init__.py"
    assert ast.get_docstring(ast.parse(init.read_text())), f"{init} has no docstring"


def test_no_module_sits_loose_in_runtime_but_the_cli():
    loose = sorted(p.name for p in (ROOT / "runtime").glob("*.py"))
    assert loose == ["__init__.py", "cli.py"]


def test_driver_imports_ray_with_zero_copy_on():
    """Ray reads the flag once, at import: the runtime must set it before any module of
    ours imports ray (agents.actor does, through runtime.engine.run)."""
    code = ("import os; os.environ.pop('RAY_ENABLE_ZERO_COPY_TORCH_TENSORS', None); "
            "import latentray.runtime.engine.run; from ray._private import ray_constants as c; "
            "print(c.RAY_ENABLE_ZERO_COPY_TORCH_TENSORS)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
