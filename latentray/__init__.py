"""latentray: latent multi-agent graphs on Ray.

Everything lives under this one name: latentray.agents, latentray.channels,
latentray.runtime and latentray.topologies (a generic top-level `agents` or `runtime`
would clash with other libraries). Installed, the four sit inside this package; in the
repository they are the folders at its root, beside this one, so a checkout (a Ray job
whose working directory is the repository) imports them with no install.
"""
from pathlib import Path as _Path

_HERE = _Path(__file__).resolve().parent
if not (_HERE / "agents").is_dir() and (_HERE.parent / "agents" / "__init__.py").is_file():
    __path__.append(str(_HERE.parent))  # a checkout: the subpackages are this folder's siblings

# The Python API (latentray/api.py, docs/python.md) and the errors it raises, imported on
# first use: `import latentray.agents` stays free of Ray and of the runtime.
_API = {"load_spec", "run", "evaluate", "Session"}
_ERRORS = {
    "LatentrayError": "latentray.agents.errors",  # base of most errors a user can cause
    "ModelRefError": "latentray.agents.errors",
    "SpecError": "latentray.topologies.errors",
    "MessageError": "latentray.channels.errors",
    "CodecError": "latentray.channels.errors",
    "RunError": "latentray.runtime.engine.errors",
    "RayStartError": "latentray.runtime.engine.ray_setup",
    "DataError": "latentray.runtime.eval.problem",
}
__all__ = sorted(_API | set(_ERRORS))


def __getattr__(name: str):
    import importlib

    if name in _API:
        return getattr(importlib.import_module("latentray.api"), name)
    if name in _ERRORS:
        return getattr(importlib.import_module(_ERRORS[name]), name)
    raise AttributeError(f"module 'latentray' has no attribute {name!r}")
