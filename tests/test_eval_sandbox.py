"""The code sandbox against hostile candidates: each case must end fast, fail, and leave
nothing behind (processes, files, leaked secrets)."""
from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

import pytest

from runtime.eval import sandbox
from runtime.eval.checkers import get_checker
from runtime.eval.problem import Problem
from runtime.eval.sandbox import run_python

GUARDS = sandbox.guards()


def alive(pid: int) -> bool:
    """A process that still runs (a zombie waiting for its reaper does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def group_members(pgid: int) -> list:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                out.append(int(entry.name))
    return out


def wait_until(predicate, seconds=3.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_clean_script_runs_and_returns_output():
    result = run_python("import sys\nprint('hello')\nprint('oops', file=sys.stderr)\nraise SystemExit(3)")
    assert (result.returncode, result.stdout, result.stderr.strip(), result.timed_out) == (3, "hello\n", "oops", False)
    assert run_python("print(sum(range(10)))").ok


def test_infinite_loop_times_out_and_is_killed():
    start = time.monotonic()
    result = run_python("while True:\n    pass\n", timeout_s=2.0)
    elapsed = time.monotonic() - start
    assert result.timed_out and result.killed_by == "timeout" and not result.ok
    assert elapsed >= 2.0, elapsed  # killed by its own timer, not before


def test_creating_a_socket_fails():
    result = run_python("import socket\ns = socket.socket()\nprint('made one')", timeout_s=2.0)
    assert not result.ok and "made one" not in result.stdout
    assert "PermissionError" in result.stderr


def test_connecting_to_a_local_server_fails_and_scores_wrong():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    prompt = "def leak():\n    \"\"\"Connect home.\"\"\"\n"
    problem = Problem(id="net", question=prompt, gold="", task="code",
                      meta={"prompt": prompt, "entry_point": "leak", "test": "def check(f):\n    assert f() == 1\n"})
    answer = ("```python\nimport socket\ndef leak():\n"
              f"    socket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'secret')\n"
              "    return 1\n```")
    try:
        result = get_checker("code").check(answer, problem)
        with pytest.raises(socket.timeout):
            server.accept()  # nobody came
    finally:
        server.close()
    assert not result.correct and "PermissionError" in result.detail


@pytest.mark.skipif(not GUARDS["network_namespace"], reason="unshare(CLONE_NEWNET) does not work here (needs root)")
def test_network_namespace_stops_raw_sockets_behind_the_prelude():
    """ctypes goes around the Python-level prelude; the namespace still has no network."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    code = ("import ctypes, struct\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "fd = libc.socket(2, 1, 0)\n"
            f"addr = struct.pack('!HH4s8x', 2, {port}, bytes([127, 0, 0, 1]))\n"
            "addr = struct.pack('H', 2) + addr[2:]\n"
            "rc = libc.connect(fd, addr, len(addr))\n"
            "print(fd, rc, ctypes.get_errno())\nraise SystemExit(0 if rc == 0 else 1)\n")
    try:
        result = run_python(code, timeout_s=2.0)
    finally:
        server.close()
    assert result.returncode == 1, result
    assert int(result.stdout.split()[0]) >= 0  # the socket itself exists, in an empty namespace


def test_allocating_4_gb_fails():
    result = run_python("x = bytearray(4 * 1024 ** 3)\nprint(len(x))", timeout_s=5.0, memory_mb=512)
    assert not result.ok and result.stdout == ""
    assert "MemoryError" in result.stderr or result.killed_by is not None


def test_fork_bomb_is_bounded_and_leaves_no_process():
    code = ("import os, sys\nprint(os.getpid(), flush=True)\n"
            "while True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n")
    result = run_python(code, timeout_s=2.0)
    assert not result.ok
    pgid = int(result.stdout.split()[0])
    assert wait_until(lambda: group_members(pgid) == []), group_members(pgid)


def test_fork_is_blocked_when_no_process_cap_works(monkeypatch):
    """As root with neither `nobody` nor a pids cgroup, the prelude removes fork."""
    monkeypatch.setattr(sandbox, "_nproc_limit", lambda uid: None)
    monkeypatch.setattr(sandbox.guards_.PidsCgroup, "create", classmethod(lambda cls, n: None))
    result = run_python("import os\nos.fork()\n", timeout_s=2.0)
    assert result.returncode == 1 and "starting processes is disabled" in result.stderr
    result = run_python("import subprocess\nsubprocess.run(['true'])\n", timeout_s=2.0)
    assert result.returncode == 1 and "starting processes is disabled" in result.stderr


def test_writing_100_mb_is_stopped_by_the_file_size_limit():
    code = ("import os\ntry:\n    with open('big', 'wb') as f:\n        f.write(b'0' * (100 * 1024 * 1024))\n"
            "except OSError as exc:\n    print(os.path.getsize('big'), exc.errno)\n    raise\n")
    result = run_python(code, timeout_s=5.0)
    assert not result.ok
    size, errno_ = map(int, result.stdout.split())
    assert size <= sandbox.FSIZE_BYTES and errno_ == 27  # EFBIG: "File too large"


def test_child_left_behind_is_killed():
    code = "import subprocess\np = subprocess.Popen(['sleep', '60'])\nprint(p.pid, flush=True)\n"
    result = run_python(code, timeout_s=5.0)
    assert result.ok and not result.timed_out  # it returned without waiting for the sleep
    pid = int(result.stdout.split()[0])
    assert wait_until(lambda: not alive(pid)), f"sleep {pid} survived"


def test_temp_dir_is_removed_and_is_the_cwd_and_home():
    result = run_python("import os\nopen('left.txt', 'w').write('x')\nprint(os.getcwd())\nprint(os.environ['HOME'])")
    cwd, home = result.stdout.split()
    assert cwd == home and "latentray-sandbox-" in cwd
    assert not Path(cwd).exists() and not Path(cwd).parent.exists()


def test_parent_environment_is_not_visible(monkeypatch):
    monkeypatch.setenv("LATENTRAY_SANDBOX_SECRET", "hunter2-do-not-leak")
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    result = run_python("import os, sys\nprint(sorted(os.environ))\nprint(os.environ.get('LATENTRAY_SANDBOX_SECRET'))\n"
                        "print('/somewhere/else' in sys.path)")
    assert "hunter2" not in result.stdout
    keys, secret, in_path = result.stdout.splitlines()
    assert secret == "None" and in_path == "False"
    assert set(re.findall(r"'(\w+)'", keys)) == {"HOME", "LANG", "PATH", "TMPDIR"}


def test_output_is_truncated():
    result = run_python("print('x' * 200000)")
    assert result.ok and len(result.stdout) < sandbox.OUTPUT_LIMIT + 100
    assert result.stdout.endswith("[output truncated]")


@pytest.mark.skipif(os.geteuid() == 0 and not (GUARDS["drop_to_uid"] or GUARDS["pids_cgroup"]),
                    reason="as root without `nobody` or a pids cgroup there is no process cap to measure")
def test_process_cap_limits_concurrent_children():
    code = ("import subprocess\nprocs = []\ntry:\n    for _ in range(200):\n"
            "        procs.append(subprocess.Popen(['sleep', '30']))\nexcept OSError:\n    pass\nprint(len(procs))\n")
    result = run_python(code, timeout_s=5.0)
    assert result.ok and 0 < int(result.stdout) < sandbox.MAX_PROCESSES
