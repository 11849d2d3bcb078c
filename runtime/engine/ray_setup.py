"""Start (or join) Ray with the settings latent messages need.

Ray pickles torch tensors with a copy on put and on get unless
RAY_ENABLE_ZERO_COPY_TORCH_TENSORS=1 is set before `import ray`, in the driver and in
every worker: runtime/__init__.py sets it in the driver, runtime_env() in the workers.
Workers also get the repository root on PYTHONPATH, so the four packages import there
without an install.
"""
from __future__ import annotations

import os
from pathlib import Path

from channels.zero_copy_env import ZERO_COPY_ENV, quiet_zero_copy_warnings

REPO_ROOT = str(Path(__file__).resolve().parents[2])


STARTED_LOCALLY = False  # whether this process started its own Ray (so nothing can add nodes)


def runtime_env() -> dict:
    path = os.pathsep.join(p for p in (REPO_ROOT, os.environ.get("PYTHONPATH", "")) if p)
    return {"env_vars": {**ZERO_COPY_ENV, "PYTHONPATH": path}}


def ensure_ray(address: str | None = None, num_cpus: float | None = None, dashboard: bool = False,
               metrics_export_port: int | None = None, object_store_bytes: int | None = None):
    """Initialise Ray once per process: join `address` (or RAY_ADDRESS), else start a local one.

    A local Ray gets at least `num_cpus` logical CPUs, so every agent's actor can be
    placed even on a small machine (agents mostly wait on each other). With
    `metrics_export_port` it serves Prometheus metrics on that port, reported every second.
    """
    import ray

    quiet_zero_copy_warnings()
    if ray.is_initialized():
        return ray
    global STARTED_LOCALLY
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, runtime_env=runtime_env())
    else:
        STARTED_LOCALLY = True
        cpus = max(os.cpu_count() or 1, int(-(-(num_cpus or 0) // 1)))
        metrics = {} if metrics_export_port is None else {
            "_metrics_export_port": metrics_export_port, "_system_config": {"metrics_report_interval_ms": 1000}}
        # "local": a cluster someone started on this machine with `ray start` is not joined
        # by accident; joining one takes --address or RAY_ADDRESS (a job's driver has it set)
        store = {} if object_store_bytes is None else {"object_store_memory": object_store_bytes}
        # Ray turns token authentication on for a Ray it starts (unless RAY_AUTH_MODE=disabled;
        # tests/test_safe_defaults.py checks it); the dashboard, when asked for, listens on
        # loopback only.
        ray.init(address="local", num_cpus=cpus, runtime_env=runtime_env(), include_dashboard=dashboard,
                 dashboard_host="127.0.0.1", configure_logging=False, **metrics, **store)
    return ray
