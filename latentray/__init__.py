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
