"""Run untrusted Python (model-written code) in a jail, with hard limits.

The jail (jail_launcher.py) is the guard: new mount, network, PID and IPC namespaces;
a read-only root holding only the system libraries and the interpreter, plus a private
working directory (/work, removed afterwards) as the one writable place; no network (a
downed loopback); no other process to see or signal; no capabilities; no new processes
or threads. As root it runs as a fresh unprivileged uid; otherwise it builds the same
jail inside a user namespace of its own. On top: CPU seconds, address space, file size
and open-file limits, no core dumps, a wall-time limit (the whole process group is
killed), and an environment holding nothing of the parent's.

Where the machine allows no jail (no namespaces for this user), code is not run:
`run_python` raises SandboxUnavailable, unless the caller opted in with
`allow_unjailed()` (`latentray eval --unsafe-code`); then the older, weaker guards of
sandbox_guards.py apply (limits, `nobody`, a pids cgroup, a Python-level socket ban).

A test's verdict is not the exit code: the harness calls `check` itself, after the
candidate's module has run, with the builtins as they were before the candidate ran,
and only then writes a one-time token (read from stdin before the candidate starts) to
a descriptor of its own. An exit, os._exit, a signal, a timeout or a replaced `check`
all leave no token, so they fail.
"""
from __future__ import annotations

import functools
import json
import math
import os
import random
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from latentray.agents.errors import LatentrayError
from latentray.runtime.eval import sandbox_guards as guards_

OUTPUT_LIMIT = 64 * 1024  # bytes of stdout / stderr kept
FSIZE_BYTES = 16 * 1024 * 1024
NOFILE = 64
MAX_PROCESSES = 32  # processes one unjailed run may have at once (on top of the user's, for NPROC)
LAUNCHER = Path(__file__).with_name("jail_launcher.py")
# a fresh uid per jailed run as root, from a range no account uses
JAIL_UIDS = range(1_900_000_000, 2_000_000_000)
SYSTEM_DIRS = ("/usr", "/bin", "/lib", "/lib64", "/lib32", "/libx32")
_ALLOW_UNJAILED = False


class SandboxUnavailable(LatentrayError, RuntimeError):
    """No jail can be built here, and running model-written code without one was not allowed."""


def allow_unjailed(allowed: bool = True) -> None:
    """Let code run under the weaker guards where no jail can be built (--unsafe-code)."""
    global _ALLOW_UNJAILED
    _ALLOW_UNJAILED = allowed


# The harness: reads the token, runs the candidate, then (with a test) calls check and
# writes the token. Its own references to os.write / os._exit are taken before the
# candidate can replace them.
_HARNESS = '''\
import builtins, json, os, sys, traceback
_write, _exit, _flush = os.write, os._exit, sys.stdout.flush
_token = sys.stdin.readline().strip()
sys.stdin = open(os.devnull)
with open("_job.json") as _f:
    _job = json.load(_f)
del _f
if _job["no_network"]:
    exec(open("_guards.py").read())
if _job["test"] is None:
    import runpy
    sys.argv = ["candidate.py"]
    runpy.run_path("candidate.py", run_name="__main__")
    raise SystemExit(0)
_clean = dict(vars(builtins))
_space = {"__name__": "candidate", "__file__": "candidate.py", "__builtins__": builtins}
try:
    with open("candidate.py", encoding="utf-8") as _f:
        exec(compile(_f.read(), "candidate.py", "exec"), _space)
    _tests = dict(_space, __builtins__=_clean, __name__="test")
    exec(compile(_job["test"], "test.py", "exec"), _tests)
    _tests["check"](_space[_job["entry_point"]])
except BaseException:
    try:
        traceback.print_exc()
        sys.stderr.flush()
    finally:
        _exit(1)
try:
    _flush()
except BaseException:
    pass
_write(_job["verdict_fd"], ("passed " + _token).encode())
_exit(0)
'''

# Only without a jail: a Python-level ban on sockets and, where no process cap works, on
# starting processes (ctypes could still do both).
_UNJAILED_GUARDS = '''\
import _socket, socket

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
if _job["no_processes"]:
    import _posixsubprocess

    def _no_processes(*args, **kwargs):
        raise PermissionError("starting processes is disabled in the latentray sandbox")

    for _name in ("fork", "forkpty", "vfork", "posix_spawn", "posix_spawnp", "system"):
        if hasattr(os, _name):
            setattr(os, _name, _no_processes)
    _posixsubprocess.fork_exec = _no_processes
'''


@dataclass(frozen=True)
class SandboxResult:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    killed_by: str | None  # "timeout", or the signal that ended it (e.g. "SIGXCPU")
    passed: bool | None = None  # with a test: whether check() returned (None: no test run)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and self.passed is not False


def run_python(code: str, *, timeout_s: float = 10.0, memory_mb: int = 512, test: str | None = None,
               entry_point: str | None = None) -> SandboxResult:
    """Run `code` in the jail. Without `test`, as a script (`__main__`); with `test` (source
    defining `check(candidate)`), as module `candidate`, then `check(<entry_point>)`:
    `passed` is True only if check returned. Never raises for what the code does; raises
    SandboxUnavailable where no jail works and allow_unjailed() was not called."""
    mode = jail_mode()
    if mode is None and not _ALLOW_UNJAILED:
        raise SandboxUnavailable(unavailable_reason())
    base = Path(tempfile.mkdtemp(prefix="latentray-sandbox-"))
    try:
        return _run(base, mode, code, test, entry_point, timeout_s, memory_mb)
    finally:
        _remove_tree(base)


def unavailable_reason() -> str:
    return ("this machine allows no sandbox for model-written code (no user, mount and network namespaces "
            "for this user); run on a machine that does, or pass --unsafe-code to run it under weaker guards")


@functools.cache
def jail_mode() -> str | None:
    """"root" or "user" where the jail can be built here (probed once), else None."""
    mode = "root" if os.geteuid() == 0 else "user"
    base = Path(tempfile.mkdtemp(prefix="latentray-sandbox-probe-"))
    try:
        (base / "work").mkdir()
        config = _jail_config(base, mode, ["-I", "-c", "pass"], {})
        done = subprocess.run([sys.executable, "-I", str(LAUNCHER), json.dumps(config)], capture_output=True,
                              timeout=60, stdin=subprocess.DEVNULL)
        return mode if done.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None
    finally:
        _remove_tree(base)


def guards() -> dict:
    """Which guards work here (probed once): for logs and tests."""
    uid = guards_.drop_uid()
    return {"jail": jail_mode(), "network_namespace": guards_.network_namespace_works(), "drop_to_uid": uid,
            "nproc_limit": uid is not None or os.geteuid() != 0, "pids_cgroup": guards_.pids_cgroup_works()}


def interpreter() -> str:
    """The base interpreter (not a virtual environment's link): the jail shows its prefix only."""
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def _jail_config(base: Path, mode: str, argv: list, env: dict, limits: list = ()) -> dict:
    (base / "root").mkdir()
    uid = random.choice(JAIL_UIDS)
    shown = [d for d in SYSTEM_DIRS if os.path.lexists(d)]
    prefix = os.path.realpath(sys.base_prefix)
    if not any(prefix == d or prefix.startswith(d + "/") for d in shown):
        shown.append(prefix)
    if mode == "root":
        os.chown(base / "work", uid, uid)
    return {"mode": mode, "root": str(base / "root"), "work": str(base / "work"), "binds": shown, "uid": uid,
            "gid": uid, "python": interpreter(), "argv": argv, "env": env, "limits": [list(x) for x in limits],
            "nproc": 1 if mode == "root" else 2}


def _limits(timeout_s: float, memory_mb: int) -> list:
    cpu = math.ceil(timeout_s) + 1
    memory = memory_mb * 1024 * 1024
    return [("RLIMIT_CPU", cpu, cpu + 1), ("RLIMIT_AS", memory, memory), ("RLIMIT_FSIZE", FSIZE_BYTES, FSIZE_BYTES),
            ("RLIMIT_NOFILE", NOFILE, NOFILE), ("RLIMIT_CORE", 0, 0)]


def _run(base: Path, mode: str | None, code: str, test: str | None, entry_point: str | None, timeout_s: float,
         memory_mb: int) -> SandboxResult:
    work = base / "work"
    work.mkdir()
    (work / "candidate.py").write_text(code, encoding="utf-8", errors="replace")  # lone surrogates
    (work / "_harness.py").write_text(_HARNESS, encoding="utf-8")
    token = secrets.token_hex(16)
    with open(base / "stdout", "w+b") as out, open(base / "stderr", "w+b") as err, \
            open(base / "verdict", "w+b") as verdict:
        job = {"test": test, "entry_point": entry_point, "verdict_fd": verdict.fileno(),
               "no_network": mode is None, "no_processes": False}
        env = {"PATH": "/usr/bin:/bin", "HOME": "/work", "TMPDIR": "/work", "LANG": "C.UTF-8"}
        cgroup = None
        if mode is not None:
            config = _jail_config(base, mode, ["-I", "/work/_harness.py"], env, _limits(timeout_s, memory_mb))
            argv, cwd, preexec = [sys.executable, "-I", str(LAUNCHER), json.dumps(config)], base, None
        else:
            argv, cwd, preexec, cgroup = _unjailed(base, job, env, timeout_s, memory_mb)
        (work / "_job.json").write_text(json.dumps(job))
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=env if mode is None else {}, stdin=subprocess.PIPE,
                                    stdout=out, stderr=err, start_new_session=True, preexec_fn=preexec,
                                    pass_fds=(verdict.fileno(),))
            timed_out = False
            try:
                proc.stdin.write(f"{token}\n".encode())
                proc.stdin.close()
            except OSError:  # it ended before reading
                pass
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            _kill_group(proc.pid)  # also after a clean exit: anything it left behind
            rc = proc.wait()
        finally:
            if cgroup is not None:
                cgroup.kill_all()
                cgroup.remove()
        stdout, stderr = _head(out), _head(err)
        verdict.seek(0)
        said = verdict.read(256).decode("ascii", errors="replace")
    killed_by = "timeout" if timed_out else (signal.Signals(-rc).name if rc < 0 else None)
    passed = None if test is None else (not timed_out and rc == 0 and said == f"passed {token}")
    return SandboxResult(None if timed_out else rc, stdout, stderr, timed_out, killed_by, passed)


def _unjailed(base: Path, job: dict, env: dict, timeout_s: float, memory_mb: int) -> tuple:
    """(argv, cwd, preexec, cgroup) of a run under the weaker guards (no jail here); sets
    what the harness's Python-level guards must block in `job`."""
    work = base / "work"
    (work / "_guards.py").write_text(_UNJAILED_GUARDS, encoding="utf-8")
    cgroup = guards_.PidsCgroup.create(MAX_PROCESSES)
    uid = guards_.drop_uid()
    nproc = _nproc_limit(uid)
    job["no_processes"] = nproc is None and cgroup is None  # root with no process cap: no fork at all
    if uid is not None:
        os.chmod(base, 0o711)  # nobody may pass through to work/, not list the outputs
        os.chown(work, uid, uid)
    env.update(HOME=str(work), TMPDIR=str(work))
    preexec = functools.partial(_limit_child, timeout_s, memory_mb, nproc, uid,
                                guards_.network_namespace_works(), cgroup)
    return [sys.executable, "-I", "_harness.py"], work, preexec, cgroup


def _nproc_limit(uid: int | None) -> int | None:
    """RLIMIT_NPROC for an unjailed child, or None where it would not bind (root staying root)."""
    if uid is not None:
        return guards_.process_count(uid) + MAX_PROCESSES
    if os.geteuid() != 0:
        return guards_.process_count(os.getuid()) + MAX_PROCESSES
    return None


def _limit_child(timeout_s, memory_mb, nproc, uid, netns, cgroup) -> None:
    """In an unjailed child between fork and exec: cgroup and namespace first (they need
    root), then limits, then drop the user, which makes RLIMIT_NPROC bind."""
    if cgroup is not None:
        cgroup.join()
    if netns:
        guards_.unshare_network()
    limits = [(getattr(resource, name), (soft, hard)) for name, soft, hard in _limits(timeout_s, memory_mb)]
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
