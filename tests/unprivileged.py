"""Run a command as an unprivileged uid (`nobody`), from a root test process.

The interpreter, the virtual environment or the checkout may sit under a directory only
root may enter (pyenv under a 0700 /root). The command then runs in a mount namespace of
its own where each such directory is covered by an empty, enterable tmpfs into which the
paths the command needs are bound back; nothing else of it shows, and nothing changes
on the host. Root only (the caller skips otherwise).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from latentray.runtime.eval.jail_launcher import CLONE_NEWNS, MS_BIND, MS_PRIVATE, MS_REC, check_rc, libc, mount

NOBODY = 65534


def _blocked_ancestor(path: Path) -> Path | None:
    """The outermost directory above `path` that others may not enter, if any."""
    for parent in reversed(path.parents):
        if not os.stat(parent).st_mode & 0o001:
            return parent
    return None


def _plan(paths: list) -> list:
    """[(blocked directory, [paths under it to show again])]."""
    covers: dict = {}
    for p in paths:
        p = Path(os.path.realpath(p))
        blocked = _blocked_ancestor(p)
        if blocked is not None:
            covers.setdefault(blocked, []).append(p)
    return sorted(covers.items())


def run_as_nobody(argv: list, show: list, timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `argv` as nobody, with `show` (paths) reachable; returns the finished process."""
    plan = _plan(show)
    stash = Path(tempfile.mkdtemp(prefix="latentray-nobody-"))
    slots = []
    for i, (_, inner) in enumerate(plan):
        slots.append([])
        for j, _path in enumerate(inner):
            slot = stash / f"{i}-{j}"
            slot.mkdir()
            slots[-1].append(slot)

    libc.unshare, libc.mount  # looked up here: a symbol lookup in the forked child could take the loader's lock

    def preexec():
        check_rc(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        mount(None, "/", None, MS_REC | MS_PRIVATE)
        for (blocked, inner), inner_slots in zip(plan, slots):
            for path, slot in zip(inner, inner_slots):
                mount(path, slot, None, MS_BIND | MS_REC)
            mount("tmpfs", blocked, "tmpfs", 0, "mode=0755")
            for path, slot in zip(inner, inner_slots):
                os.makedirs(path, mode=0o755, exist_ok=True)
                mount(slot, path, None, MS_BIND | MS_REC)
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)

    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, preexec_fn=preexec,
                              cwd="/", env=env if env is not None else {"PATH": "/usr/bin:/bin"})
    finally:
        for slot_list in slots:
            for slot in slot_list:
                slot.rmdir()
        stash.rmdir()


def python_paths() -> list:
    """What a Python process of this test run needs: the interpreter's prefixes and the checkout."""
    root = Path(__file__).resolve().parents[1]
    return [sys.base_prefix, sys.prefix, str(root)]
