"""Run untrusted Python (model-written code) in a child process with hard limits.

Guards, each because a candidate may be buggy or hostile:
- a fresh temporary directory as cwd and HOME, removed afterwards; an environment with
  nothing of the parent's (no secrets, no PYTHONPATH) and `python -I` (isolated mode);
- its own session and process group, killed as a whole after every run, so a timeout or
  a child left behind (`Popen(["sleep", "60"])`) does not outlive the check;
- resource limits: CPU seconds, address space, file size, open files, no core dumps;
- a cap on processes against fork bombs, the first that works here (sandbox_guards.py):
  RLIMIT_NPROC (it counts every process of the user and does not bind root, so as root
  the child first becomes `nobody`), and a pids cgroup per run when one can be created
  (it also catches processes that left the group with setsid()); as root with neither,
  the prelude removes fork/spawn from the child instead (ctypes could still fork);
- no network: a new network namespace (only a downed loopback) when unshare works here,
  and always a prelude that makes creating a socket raise PermissionError.
"""
from __future__ import annotations

import functools
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from runtime.eval import sandbox_guards as guards_

OUTPUT_LIMIT = 64 * 1024  # bytes of stdout / stderr kept
FSIZE_BYTES = 16 * 1024 * 1024
NOFILE = 64
MAX_PROCESSES = 32  # processes one run may have at once (on top of the user's, for NPROC)

# Runs first in the child; the candidate is then run as its own file so that tracebacks
# show the candidate's line numbers.
_PRELUDE = '''\
import _socket, os, runpy, socket, sys

def _no_network(*args, **kwargs):
    raise PermissionError("network access is disabled in the latentray sandbox")

class _NoSocket(_socket.socket):
    def __init__(self, *args, **kwargs):
        _no_network()

socket.socket = socket.SocketType = _socket.socket = _socket.SocketType = _NoSocket
for _name in ("create_connection", "create_server", "socketpair", "fromfd", "getaddrinfo"):
    setattr(socket, _name, _no_network)
for _name in ("socketpair", "getaddrinfo"):
    if hasattr(_socket, _name):
        setattr(_socket, _name, _no_network)
if BLOCK_PROCESSES:
    import _posixsubprocess

    def _no_processes(*args, **kwargs):
        raise PermissionError("starting processes is disabled in the latentray sandbox")

    for _name in ("fork", "forkpty", "vfork", "posix_spawn", "posix_spawnp", "system"):
        if hasattr(os, _name):
            setattr(os, _name, _no_processes)
    _posixsubprocess.fork_exec = _no_processes
del _name
sys.argv = ["candidate.py"]
runpy.run_path("candidate.py", run_name="__main__")
'''


@dataclass(frozen=True)
class SandboxResult:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    killed_by: str | None  # "timeout", or the signal that ended it (e.g. "SIGXCPU")

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def run_python(code: str, *, timeout_s: float = 10.0, memory_mb: int = 512) -> SandboxResult:
    """Run `code` as a script under the guards above; never raises for what the code does."""
    base = Path(tempfile.mkdtemp(prefix="latentray-sandbox-"))
    cgroup = guards_.PidsCgroup.create(MAX_PROCESSES)
    try:
        return _run_in(base, code, timeout_s, memory_mb, cgroup)
    finally:
        if cgroup is not None:
            cgroup.kill_all()
            cgroup.remove()
        _remove_tree(base)


def guards() -> dict:
    """Which machine-dependent guards work here (probed once): for logs and tests."""
    uid = guards_.drop_uid()
    return {"network_namespace": guards_.network_namespace_works(), "drop_to_uid": uid,
            "nproc_limit": uid is not None or os.geteuid() != 0,
            "pids_cgroup": guards_.pids_cgroup_works()}


def _run_in(base: Path, code: str, timeout_s: float, memory_mb: int, cgroup) -> SandboxResult:
    uid = guards_.drop_uid()
    work = base / "work"
    work.mkdir()
    (work / "candidate.py").write_text(code, encoding="utf-8", errors="replace")  # lone surrogates
    nproc = _nproc_limit(uid)
    block = nproc is None and cgroup is None  # root with no process cap: no fork at all
    (work / "_prelude.py").write_text(f"BLOCK_PROCESSES = {block}\n" + _PRELUDE, encoding="utf-8")
    if uid is not None:
        os.chmod(base, 0o711)  # nobody may pass through to work/, not list the outputs
        os.chown(work, uid, uid)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(work), "TMPDIR": str(work), "LANG": "C.UTF-8"}
    preexec = functools.partial(_limit_child, timeout_s, memory_mb, nproc, uid,
                                guards_.network_namespace_works(), cgroup)
    with open(base / "stdout", "w+b") as out, open(base / "stderr", "w+b") as err:
        proc = subprocess.Popen([sys.executable, "-I", "_prelude.py"], cwd=work, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, start_new_session=True, preexec_fn=preexec)
        timed_out = False
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        _kill_group(proc.pid)  # also after a clean exit: children it left behind
        rc = proc.wait()
        stdout, stderr = _head(out), _head(err)
    killed_by = "timeout" if timed_out else (signal.Signals(-rc).name if rc < 0 else None)
    return SandboxResult(None if timed_out else rc, stdout, stderr, timed_out, killed_by)


def _nproc_limit(uid: int | None) -> int | None:
    """RLIMIT_NPROC for the child, or None where it would not bind (root staying root)."""
    if uid is not None:
        return guards_.process_count(uid) + MAX_PROCESSES
    if os.geteuid() != 0:
        return guards_.process_count(os.getuid()) + MAX_PROCESSES
    return None


def _limit_child(timeout_s, memory_mb, nproc, uid, netns, cgroup) -> None:
    """In the child between fork and exec: cgroup and namespace first (they need root),
    then limits, then drop the user, which makes RLIMIT_NPROC bind."""
    if cgroup is not None:
        cgroup.join()
    if netns:
        guards_.unshare_network()
    cpu = math.ceil(timeout_s) + 1
    memory = memory_mb * 1024 * 1024
    limits = [(resource.RLIMIT_CPU, (cpu, cpu + 1)), (resource.RLIMIT_AS, (memory, memory)),
              (resource.RLIMIT_FSIZE, (FSIZE_BYTES, FSIZE_BYTES)), (resource.RLIMIT_NOFILE, (NOFILE, NOFILE)),
              (resource.RLIMIT_CORE, (0, 0))]
    if nproc is not None:
        limits.append((resource.RLIMIT_NPROC, (nproc, nproc)))
    for limit, value in limits:
        resource.setrlimit(limit, _within_hard(limit, value))
    if uid is not None:
        guards_.become(uid)


def _within_hard(limit, value):
    """A non-root process cannot raise a hard limit: cap the wanted pair at it."""
    hard = resource.getrlimit(limit)[1]
    if hard == resource.RLIM_INFINITY:
        return value
    return (min(value[0], hard), min(value[1], hard))


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _head(f) -> str:
    f.seek(0)
    data = f.read(OUTPUT_LIMIT + 1)
    text = data[:OUTPUT_LIMIT].decode("utf-8", errors="replace")
    return text + "\n[output truncated]" if len(data) > OUTPUT_LIMIT else text


def _remove_tree(path: Path) -> None:
    """Remove the run's directory even if the candidate made parts of it read-only; a
    killed process may still be releasing files, so retry briefly."""
    def make_writable(func, p, _exc):
        os.chmod(os.path.dirname(p), 0o700)
        func(p)
    for _ in range(5):
        try:
            shutil.rmtree(path, onerror=make_writable)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)
    shutil.rmtree(path, ignore_errors=True)
