"""Submit, watch and stop latentray runs on a Ray cluster through Ray's Job Submission SDK.

A job's entrypoint is `python -m latentray <run|eval> ...`, run in a copy of this
repository (the job's `working_dir`), so the four packages import on the cluster without
an install. The SDK talks HTTP to the dashboard (default port 8265).

Token authentication: with RAY_AUTH_MODE=token in the environment, the SDK itself sends
the token from RAY_AUTH_TOKEN, else the file named by RAY_AUTH_TOKEN_PATH, else
~/.ray/auth_token. Without RAY_AUTH_MODE=token it sends none, even when such a token
exists (an explicit address never turns token mode on). The token is never printed.

Each function takes the dashboard address (resolved by resolve_address) and, as `conn`,
optionally a client from client() to reuse.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import sys
import time
from pathlib import Path

from latentray.runtime.engine.errors import RunError
from latentray.runtime.engine.ray_setup import REPO_ROOT, runtime_env

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
ADDRESS_HELP = (f"the cluster's dashboard, http://HOST:8265 (default: RAY_API_SERVER_ADDRESS, else RAY_ADDRESS "
                f"if it is an http(s) URL, else {DEFAULT_ADDRESS})")
COMMANDS = ("run", "eval")
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")

# Left out of the job's copy of the repository: environments, VCS data, run outputs,
# caches and model weights (gitignore patterns, relative to the repository root).
# Ray also honours the repository's .gitignore and any .rayignore.
WORKING_DIR_EXCLUDES = [
    ".venv", "venv", ".git", "/out", "/results", "/build", "/dist",
    "__pycache__", "*.pyc", ".pytest_cache", "*.egg-info", ".mypy_cache", ".ruff_cache",
    "*.gguf", "*.pt", "*.pth", "*.ckpt", "*.bin",
]

# The SDK logs every packaging step at INFO, and warns that Ray's own default excludes
# (.git, .venv) are now excluded; latentray excludes them anyway.
QUIET_LOGGERS = {"ray._private.runtime_env.working_dir": logging.ERROR,
                 "ray._private.runtime_env.packaging": logging.WARNING,
                 "ray.dashboard.modules.dashboard_sdk": logging.WARNING,
                 "ray.dashboard.modules.job.sdk": logging.WARNING}

TOKEN_HELP = ("token authentication needs RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN, "
              "in the file named by RAY_AUTH_TOKEN_PATH, or in ~/.ray/auth_token "
              "(`ray get-auth-token` on the head prints it)")


def resolve_address(address: str | None = None) -> str:
    """--address, else RAY_API_SERVER_ADDRESS (what `ray job` reads), else RAY_ADDRESS when
    it is an http(s) URL, else the local dashboard."""
    if not address:
        env = os.environ.get("RAY_ADDRESS", "")
        address = (os.environ.get("RAY_API_SERVER_ADDRESS")
                   or (env if env.startswith(("http://", "https://")) else DEFAULT_ADDRESS))
    if "://" not in address:
        address = f"http://{address}"
    if not address.startswith(("http://", "https://")):
        raise RunError(f"--address {address}: a job is submitted to the dashboard's HTTP address; "
                       "pass --address http://HOST:8265")
    return address.rstrip("/")


def job_runtime_env(excludes=()) -> dict:
    """The job's runtime_env: the repository as working_dir, latentray's worker env vars.

    PYTHONPATH is left out (it names this machine's checkout; the job's working_dir takes
    its place). RAY_OVERRIDE_JOB_RUNTIME_ENV=1 lets the driver's own ray.init(runtime_env=...)
    set the same variables again: Ray refuses that overlap otherwise.
    """
    env_vars = {k: v for k, v in runtime_env()["env_vars"].items() if k != "PYTHONPATH"}
    env_vars["RAY_OVERRIDE_JOB_RUNTIME_ENV"] = "1"
    return {"working_dir": REPO_ROOT, "excludes": [*WORKING_DIR_EXCLUDES, *excludes], "env_vars": env_vars}


def entrypoint(command: str, args) -> str:
    if command not in COMMANDS:
        raise RunError(f"cannot submit `{command}`: a job runs one of {', '.join(COMMANDS)}")
    return shlex.join(["python", "-m", "latentray", command, *map(str, args)])


def repo_path(path: str, excludes=()) -> tuple:
    """(the path as the job sees it, where it is: "copy", "excluded" or "outside").

    The job runs in a copy of the repository, so a path inside it becomes relative to its
    root. A path outside it, or inside but left out of the copy (.gitignore, excludes),
    stays absolute: the job reads it on the cluster's node (shared storage)."""
    p = Path(path).expanduser().resolve()
    try:
        rel = p.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return path, "outside"
    return (str(p), "excluded") if left_out(rel, excludes) else (rel, "copy")


def left_out(rel: str, excludes=()) -> bool:
    """Whether the repository path `rel` is missing from a job's copy of the repository: it or
    a folder above it matches the excludes, Ray's default excludes or the root .gitignore."""
    from ray._private.ray_constants import get_runtime_env_default_excludes
    from ray._private.thirdparty.pathspec import PathSpec

    gitignore = Path(REPO_ROOT, ".gitignore")
    lines = gitignore.read_text().splitlines() if gitignore.exists() else []
    spec = PathSpec.from_lines("gitwildmatch", [*get_runtime_env_default_excludes(), *WORKING_DIR_EXCLUDES,
                                                *excludes, *lines])
    parts = rel.split("/")
    return any(spec.match_file("/".join(parts[:i])) for i in range(1, len(parts) + 1))


def _token_source() -> str:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return f"RAY_AUTH_TOKEN_PATH ({os.environ['RAY_AUTH_TOKEN_PATH']})"
    return "~/.ray/auth_token"


def _token_mode() -> bool:
    return os.environ.get("RAY_AUTH_MODE", "").lower() == "token"


def _check_token() -> None:
    """With RAY_AUTH_MODE=token, fail early (and clearly) when no token can be found."""
    if not _token_mode():
        return
    from ray._raylet import AuthenticationTokenLoader

    try:
        found = AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True)
    except Exception:  # a token path that cannot be read
        found = False
    if not found:
        raise RunError(f"RAY_AUTH_MODE=token but no token was found in {_token_source()}: {TOKEN_HELP}")


def _auth_error(address: str, status: int | None) -> RunError:
    if status == 403 or (status is None and _token_mode()):
        return RunError(f"the Ray cluster at {address} refused the token from {_token_source()}: "
                        f"it is not this cluster's token; {TOKEN_HELP}")
    if _token_mode():
        return RunError(f"the Ray cluster at {address} received no token: {TOKEN_HELP}")
    return RunError(f"the Ray cluster at {address} requires a token and RAY_AUTH_MODE is not `token`: "
                    f"{TOKEN_HELP}")


def _unreachable(address: str) -> RunError:
    return RunError(f"cannot reach the Ray dashboard at {address}: start the cluster (`ray up cluster.yaml`, "
                    "or `ray start --head` here), open the tunnel (`ray dashboard cluster.yaml`), or pass "
                    "--address http://HOST:8265 (or set RAY_ADDRESS)")


@contextlib.contextmanager
def _sdk_errors(address: str, job_id: str | None = None):
    """Turn the SDK's connection, authentication and not-found errors into RunError."""
    import aiohttp
    import requests
    from ray.exceptions import AuthenticationError

    try:
        yield
    except AuthenticationError as exc:
        text = str(exc)
        status = 403 if "Authentication failed" in text else 401 if "Authentication required" in text else None
        raise _auth_error(address, status) from None
    except aiohttp.WSServerHandshakeError as exc:
        if exc.status in (401, 403):
            raise _auth_error(address, exc.status) from None
        raise
    except (ConnectionError, requests.exceptions.ConnectionError, requests.exceptions.Timeout,
            aiohttp.ClientConnectionError):
        raise _unreachable(address) from None
    except RuntimeError as exc:
        if job_id and ("status code 404" in str(exc) or "does not exist" in str(exc)):
            raise RunError(f"no job {job_id} on the Ray cluster at {address}: "
                           f"`ray job list --address {address}` lists its jobs") from None
        raise


def client(address: str | None = None):
    """A JobSubmissionClient for `address` (resolved as in resolve_address), connected."""
    from ray.job_submission import JobSubmissionClient

    address = resolve_address(address)
    _check_token()
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    with _sdk_errors(address), _without_env("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"):
        return JobSubmissionClient(address)  # the SDK lets these two override its address


@contextlib.contextmanager
def _without_env(*names):
    saved = {n: os.environ.pop(n) for n in names if n in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def submit(address: str | None, entrypoint_args, wait: bool = False, *, command: str = "run",
           excludes=(), metadata: dict | None = None, out=None, conn=None) -> str:
    """Submit `python -m latentray <command> <entrypoint_args...>` as a job; its id.

    With `wait`, stream the job's logs to `out` (stdout) until it ends."""
    address = resolve_address(address)
    c = conn or client(address)
    with _sdk_errors(address):
        job_id = c.submit_job(entrypoint=entrypoint(command, entrypoint_args),
                              runtime_env=job_runtime_env(excludes),
                              metadata={"latentray": command, **(metadata or {})})
    if wait:
        logs(address, job_id, follow=True, out=out, conn=c)
    return job_id


def status(address: str | None, job_id: str, conn=None):
    """The job's JobDetails (status, message, entrypoint, start/end times)."""
    address = resolve_address(address)
    c = conn or client(address)
    with _sdk_errors(address, job_id):
        return c.get_job_info(job_id)


def wait_until_done(address: str | None, job_id: str, timeout_s: float | None = None, poll_s: float = 0.5,
         conn=None) -> str:
    """Block until the job reaches SUCCEEDED, FAILED or STOPPED; that status."""
    address = resolve_address(address)
    c = conn or client(address)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        state = str(status(address, job_id, conn=c).status)
        if state in TERMINAL:
            return state
        if deadline is not None and time.monotonic() > deadline:
            raise RunError(f"job {job_id} is still {state} after {timeout_s:.0f} s")
        time.sleep(poll_s)


def logs(address: str | None, job_id: str, follow: bool = False, out=None, conn=None) -> None:
    """Write the job's logs to `out` (stdout); with `follow`, keep streaming until it ends."""
    out = out or sys.stdout
    address = resolve_address(address)
    c = conn or client(address)
    if not follow:
        with _sdk_errors(address, job_id):
            text = c.get_job_logs(job_id)
        out.write(text)
        out.flush()
        return
    status(address, job_id, conn=c)  # a clear error for an unknown job before the stream opens

    async def stream():
        async for chunk in c.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()

    with _sdk_errors(address, job_id):
        asyncio.run(stream())


def stop(address: str | None, job_id: str, conn=None) -> bool:
    """Ask the job to stop; False when it had already finished."""
    address = resolve_address(address)
    c = conn or client(address)
    with _sdk_errors(address, job_id):
        return c.stop_job(job_id)
