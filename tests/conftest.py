"""Shared fixtures: one local Ray per test session (ray.init costs ~5 s here)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_ENABLE_ZERO_COPY_TORCH_TENSORS", "1")  # before any `import ray`
# One torch thread per test process (and per process it starts), as Ray gives each actor:
# the suite runs one worker per core beside the actors, and OpenMP threads that outnumber
# the cores spin while they wait, which doubled the CPU time of in-process model tests.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def _has_gpu() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_configure(config):
    """A Ray this suite starts writes ~/.ray/auth_token if there is none; make it exist before
    any test runs, so tests that check it is left alone are not raced by a parallel worker."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return  # the controller did it before the workers started
    token = Path.home() / ".ray" / "auth_token"
    if not token.exists():
        import subprocess

        ray_cli = Path(sys.executable).parent / "ray"
        if ray_cli.exists():
            subprocess.run([str(ray_cli), "get-auth-token", "--generate"], capture_output=True, timeout=120)


def pytest_collection_modifyitems(config, items):
    if _has_gpu():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


METRICS_PORT = free_port()  # the session Ray's Prometheus export (tests/test_metrics_export.py)


@pytest.fixture(scope="session")
def ray_session():
    """The session's Ray. Actors are kept warm across tests (runtime/engine/warm_actors.py):
    a run whose actors an earlier test already started takes them, with no process start
    and no model load; tests/test_warm_actors.py shows a warm actor answers as a fresh one."""
    from latentray.runtime.engine.ray_setup import ensure_ray
    from latentray.runtime.engine.warm_actors import keep_warm

    ray = ensure_ray(num_cpus=8, metrics_export_port=METRICS_PORT)
    with keep_warm():
        yield ray
    ray.shutdown()


@pytest.fixture
def ray_for_other_drivers(ray_session):
    """The session's Ray, for a test whose other processes join it as drivers: the actors
    parked here are killed first, as their CPUs would keep those drivers' actors waiting."""
    from latentray.runtime.engine import warm_actors

    warm_actors.clear()
    return ray_session


def load_builtin(name: str):
    """(model, tokenizer) of a built-in real model, or a skip that names the install."""
    from latentray.agents.errors import ModelRefError
    from latentray.agents.models import ModelRef, load_model

    try:
        ModelRef.parse(f"builtin:{name}").check_available()
    except ModelRefError as exc:
        pytest.skip(str(exc))
    model, tokenizer, _ = load_model(f"builtin:{name}")
    return model, tokenizer


@pytest.fixture(scope="session")
def smollm2():
    return load_builtin("smollm2-135m")


@pytest.fixture(scope="session")
def gemma3():
    return load_builtin("gemma3-270m")
