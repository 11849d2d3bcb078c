"""Start (or join) Ray with the settings latent messages need.

Ray pickles torch tensors with a copy on put and on get unless
RAY_ENABLE_ZERO_COPY_TORCH_TENSORS=1 is set before `import ray`, in the driver and in
every worker: runtime/__init__.py sets it in the driver, runtime_env() in the workers.
Workers also get the repository root on PYTHONPATH, so the four packages import there
without an install.

Ray's own output (its start-up banner, notices, the actors' stdout and stderr relayed with a
"(pid=...)" prefix) stays in its session logs unless `verbose`: the terminal shows
latentray's lines, and Ray's errors (an actor that died...), which Ray reports either way.
A Ray that cannot start or be joined is one RayStartError naming its logs and the fix.
"""
from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from latentray.agents.errors import first_line
from latentray.channels.zero_copy_env import ZERO_COPY_ENV, quiet_zero_copy_warnings

from latentray.runtime.engine.errors import RunError

REPO_ROOT = str(Path(__file__).resolve().parents[2])


STARTED_LOCALLY = False  # whether this process started its own Ray (so nothing can add nodes)


def runtime_env() -> dict:
    path = os.pathsep.join(p for p in (REPO_ROOT, os.environ.get("PYTHONPATH", "")) if p)
    return {"env_vars": {**ZERO_COPY_ENV, "PYTHONPATH": path}}


class RayStartError(RunError):
    """Ray could not be started here, or the cluster at an address could not be joined."""


class ClusterStoreSizeError(RunError):
    """limits.object_store_bytes asked of a cluster that already exists (its store is sized)."""


REACH_TIMEOUT_S = 5.0  # a head that does not accept a connection this fast is taken as down


def _newest_session() -> Path:
    """This machine's newest Ray session folder (RAY_TMPDIR moves it)."""
    root = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
    return Path(root) / "ray" / "session_latest"


def ray_logs_dir() -> str:
    """Where this machine's newest Ray session keeps its logs."""
    return str(_newest_session() / "logs")


def ray_grafana_dashboards_dir() -> str:
    """Where this machine's newest Ray session has Grafana read dashboards from (Ray writes
    that set-up when its head runs the dashboard; RAY_METRICS_GRAFANA_DASHBOARD_OUTPUT_DIR
    moves it)."""
    moved = os.environ.get("RAY_METRICS_GRAFANA_DASHBOARD_OUTPUT_DIR")
    return moved or str(_newest_session() / "metrics" / "grafana" / "dashboards")


def refuse_store_size_when_joining(address: str | None, object_store_bytes: int | None) -> None:
    """A cluster's object store is sized when its nodes start, so a spec cannot resize it:
    say so rather than run with a store the spec did not ask for."""
    address = address or os.environ.get("RAY_ADDRESS")
    if address and object_store_bytes is not None:
        raise ClusterStoreSizeError(
            f"limits.object_store_bytes = {object_store_bytes} cannot apply to the running Ray cluster at "
            f"{address}: its object store was sized when it started; remove limits.object_store_bytes from "
            f"the spec, or size the cluster's store with `ray start --object-store-memory {object_store_bytes}`")


def _host_port(address: str):
    """(host, port) of a HOST:PORT address, with or without a scheme; None for `auto` and
    other forms Ray resolves itself."""
    target = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def _unreachable(address: str) -> str | None:
    """Why nothing accepts a connection at `address` (None: something does, or it cannot be
    told). Checked before ray.init, which retries a dead address for minutes."""
    where = _host_port(address)
    if where is None:
        return None
    try:
        with socket.create_connection(where, timeout=REACH_TIMEOUT_S):
            return None
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__


def _join_failed(address: str, reason: str) -> RayStartError:
    return RayStartError(
        f"cannot join the Ray cluster at {address}: {reason}; check that its head runs (`ray status --address "
        f"{address}`) and that --address or RAY_ADDRESS names it (unset both to start a local Ray); the head's "
        f"logs are in {ray_logs_dir()} on its machine")


def _start_failed(reason: str) -> RayStartError:
    return RayStartError(
        f"cannot start a local Ray: {reason}; read its logs in {ray_logs_dir()}, stop leftover Ray processes "
        f"with `ray stop --force` and run again (--verbose shows Ray's own output)")


def _output_settings(verbose: bool) -> dict:
    """ray.init's output options: Ray's defaults when verbose; otherwise no relayed actor
    output and only the errors of Ray's logger (its banner and notices stay in its logs)."""
    if verbose:
        return {"log_to_driver": True, "configure_logging": True, "logging_level": logging.INFO}
    logging.getLogger("ray").setLevel(logging.ERROR)
    return {"log_to_driver": False, "configure_logging": False}


def _init(ray, fail, **kwargs) -> None:
    """ray.init, with any failure (Ray exits the process on some) turned into `fail(reason)`."""
    try:
        ray.init(**kwargs)
    except (Exception, SystemExit) as exc:
        try:
            ray.shutdown()  # what a half-finished start left running
        except Exception:
            pass
        raise fail(first_line(exc)) from None


def _join(ray, address: str, verbose: bool) -> None:
    reason = _unreachable(address)
    if reason:
        raise _join_failed(address, f"nothing accepts connections there ({reason})")
    _init(ray, lambda why: _join_failed(address, why), address=address, runtime_env=runtime_env(),
          **_output_settings(verbose))


def _start_local(ray, num_cpus, dashboard: bool, metrics_export_port, object_store_bytes, verbose: bool) -> None:
    cpus = max(os.cpu_count() or 1, int(-(-(num_cpus or 0) // 1)))
    # no idle workers started ahead: every actor of a run asks for a runtime env of its own,
    # so they would never be used, only cost a process start each
    config = {"prestart_worker_first_driver": False, "enable_worker_prestart": False}
    metrics = {} if metrics_export_port is None else {"_metrics_export_port": metrics_export_port}
    if metrics_export_port is not None:
        config["metrics_report_interval_ms"] = 1000
    store = {} if object_store_bytes is None else {"object_store_memory": object_store_bytes}
    # "local": a cluster someone started on this machine with `ray start` is not joined
    # by accident; joining one takes --address or RAY_ADDRESS (a job's driver has it set).
    # Ray turns token authentication on for a Ray it starts (unless RAY_AUTH_MODE=disabled;
    # tests/test_safe_defaults.py checks it); the dashboard, when asked for, listens on
    # loopback only.
    settings = dict(address="local", num_cpus=cpus, runtime_env=runtime_env(), include_dashboard=dashboard,
                    dashboard_host="127.0.0.1", _system_config=config, **_output_settings(verbose), **metrics, **store)
    try:
        _init(ray, _start_failed, **settings)
    except RayStartError as exc:
        # on a loaded machine Ray's own processes can miss its start-up deadline ("Timed out
        # waiting for file ..."); the half-started Ray is already shut down, so one more try
        # is clean. Any other failure is real and is raised at once.
        if "timed out" not in str(exc).lower():
            raise
        _init(ray, _start_failed, **settings)


def ensure_ray(address: str | None = None, num_cpus: float | None = None, dashboard: bool = False,
               metrics_export_port: int | None = None, object_store_bytes: int | None = None,
               verbose: bool = False):
    """Initialise Ray once per process: join `address` (or RAY_ADDRESS), else start a local one.

    A local Ray gets at least `num_cpus` logical CPUs, so every agent's actor can be
    placed even on a small machine (agents mostly wait on each other). With
    `metrics_export_port` it serves Prometheus metrics on that port, reported every second.
    `object_store_bytes` sizes a local Ray's store; joining a cluster with it is refused.
    `verbose` shows Ray's own output. Raises RayStartError when Ray cannot start or be joined.
    """
    import ray

    quiet_zero_copy_warnings()
    refuse_store_size_when_joining(address, object_store_bytes)
    if ray.is_initialized():
        return ray
    global STARTED_LOCALLY
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        _join(ray, address, verbose)
    else:
        _start_local(ray, num_cpus, dashboard, metrics_export_port, object_store_bytes, verbose)
        STARTED_LOCALLY = True
    return ray
