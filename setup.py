"""Which packages install, and from where: everything under `latentray` (the rest of the
project's metadata is in pyproject.toml). The repository keeps the four packages at its
root, as the design lays it out; package_dir maps each into the latentray namespace, so
installed there is no top-level `agents`, `channels`, `runtime` or `topologies`."""
from setuptools import find_namespace_packages, setup

TOP = ("agents", "channels", "runtime", "topologies")
found = find_namespace_packages(include=[f"{t}{tail}" for t in TOP for tail in ("", ".*")],
                                exclude=["*.__pycache__"])
setup(packages=["latentray"] + [f"latentray.{p}" for p in found],
      package_dir={"latentray": "latentray", **{f"latentray.{t}": t for t in TOP}})
