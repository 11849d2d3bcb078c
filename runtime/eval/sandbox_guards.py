"""The machine-dependent guards of the sandbox, each probed once and used when it works.

- drop_uid: as root, RLIMIT_NPROC does not bind (the kernel exempts uid 0), so the child
  becomes `nobody` when nobody can start this interpreter (not when it lives under a
  0700 /root, as with pyenv as root).
- network namespace: unshare(CLONE_NEWNET) leaves the child only a downed loopback
  (needs root; os.unshare is Python 3.12+, so through libc).
- pids cgroup: caps the processes of one run at once and lists them all for the final
  kill, even those that left the process group with setsid(); needs a writable pids
  hierarchy (cgroup v1 `pids`, or v2 where our cgroup may delegate `pids`).
"""
from __future__ import annotations

import ctypes
import functools
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

NOBODY_UID = 65534
_CLONE_NEWNET = 0x40000000


@functools.cache
def _libc_unshare():
    """Resolved in the parent: a dlopen between fork and exec could deadlock on the
    loader lock when the parent has threads."""
    return ctypes.CDLL(None, use_errno=True).unshare


def unshare_network() -> None:
    """In a child before exec: a new, empty network namespace."""
    if _libc_unshare()(_CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed")


def become(uid: int) -> None:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


@functools.cache
def drop_uid() -> int | None:
    """nobody's uid when we are root and nobody can start this interpreter, else None."""
    if os.geteuid() != 0:
        return None
    return NOBODY_UID if _probe(functools.partial(become, NOBODY_UID)) else None


@functools.cache
def network_namespace_works() -> bool:
    try:
        _libc_unshare()
    except (OSError, AttributeError):  # no libc symbol (not Linux)
        return False
    return _probe(unshare_network)


def process_count(uid: int) -> int:
    """Tasks (threads count, as for RLIMIT_NPROC) the user runs now, read from /proc."""
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
            except OSError:
                continue
    return count


class PidsCgroup:
    """One run's pids cgroup: the child joins it before exec; afterwards every process
    in it is killed and the cgroup removed."""

    def __init__(self, path: Path):
        self.path = path
        self._procs_file = str(path / "cgroup.procs")  # built here, not in the forked child

    @classmethod
    def create(cls, max_pids: int) -> PidsCgroup | None:
        parent = _pids_parent()
        if parent is None:
            return None
        path = parent / f"latentray-sandbox-{uuid.uuid4().hex[:12]}"
        try:
            path.mkdir()
            (path / "pids.max").write_text(str(max_pids))
        except OSError:
            cls(path).remove()
            return None
        return cls(path)

    def join(self) -> None:
        """In the child before exec (no Python-level buffering after fork)."""
        fd = os.open(self._procs_file, os.O_WRONLY)
        try:
            os.write(fd, str(os.getpid()).encode())
        finally:
            os.close(fd)

    def kill_all(self) -> None:
        for _ in range(50):  # a fork racing the kill can add one; cgroup.procs settles fast
            pids = [int(p) for p in self._procs() if p.strip()]
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.02)

    def remove(self) -> None:
        for _ in range(50):  # killed processes leave the cgroup a moment later
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.02)

    def _procs(self) -> list:
        try:
            return (self.path / "cgroup.procs").read_text().split()
        except OSError:
            return []


def pids_cgroup_works() -> bool:
    return _pids_parent() is not None


@functools.cache
def _pids_parent() -> Path | None:
    """Our own cgroup in a writable hierarchy with the pids controller, if any works."""
    for parent in _pids_candidates():
        probe = parent / f"latentray-sandbox-probe-{os.getpid()}"
        try:
            probe.mkdir()
            ok = (probe / "pids.max").exists()
            probe.rmdir()
        except OSError:
            continue
        if ok:
            return parent
    return None


def _pids_candidates() -> list:
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
        own = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in mounts:
        fields = line.split()
        if len(fields) < 4:
            continue
        mountpoint, fstype, options = fields[1], fields[2], fields[3].split(",")
        if fstype == "cgroup" and "pids" in options:
            rel = next((p for h, c, p in _cgroup_lines(own) if "pids" in c.split(",")), None)
        elif fstype == "cgroup2":
            rel = next((p for h, c, p in _cgroup_lines(own) if h == "0"), None)
            if rel is not None and "pids" not in _read(Path(mountpoint) / rel.lstrip("/") / "cgroup.subtree_control"):
                continue
        else:
            continue
        if rel is not None:
            found.append(Path(mountpoint) / rel.lstrip("/"))
    return found


def _cgroup_lines(lines):
    return [tuple(line.split(":", 2)) for line in lines if line.count(":") >= 2]


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _probe(preexec) -> bool:
    """Whether this interpreter starts with `preexec` applied in the child."""
    try:
        done = subprocess.run([sys.executable, "-I", "-c", "pass"], cwd="/", env={}, preexec_fn=preexec,
                              capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0
