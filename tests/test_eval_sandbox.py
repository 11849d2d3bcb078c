"""The code sandbox against hostile candidates.

The hostile corpus (tests/sandbox_corpus.py) must fail in the jail as whoever runs the
suite (root in CI) and, from a root run, again as an unprivileged uid, where the jail is
built inside a user namespace. The code checker must score as wrong every way a wrong
solution can end early or tamper with its test. Without a jail, code is refused unless
the caller allowed the weaker guards.
"""
from __future__ import annotations

import json
import os
import re
import socket
import sys
import tempfile
import time
from pathlib import Path

import pytest

from latentray.runtime.eval import sandbox
from latentray.runtime.eval.checkers import get_checker
from latentray.runtime.eval.problem import Problem
from latentray.runtime.eval.sandbox import SandboxUnavailable, run_python

from sandbox_corpus import cases, run_corpus
from unprivileged import python_paths, run_as_nobody

GUARDS = sandbox.guards()
ROOT = Path(__file__).resolve().parents[1]
needs_jail = pytest.mark.skipif(GUARDS["jail"] is None, reason="this machine allows no namespaces for a jail")


@pytest.fixture
def target():
    """(port of a listener on 127.0.0.1, a secret file in a results directory anyone may read)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    results = Path(tempfile.mkdtemp(prefix="latentray-results-"))
    results.chmod(0o777)  # readable and writable by an unprivileged uid: only the jail stops it
    secret = results / "answers.jsonl"
    secret.write_text('{"answer": "secret"}\n')
    secret.chmod(0o644)
    yield server.getsockname()[1], str(secret)
    server.close()
    for f in results.iterdir():
        f.unlink()
    results.rmdir()


@needs_jail
def test_the_hostile_corpus_fails_in_the_jail(target):
    report = run_corpus(*target)
    escaped = {name: r for name, r in report.items() if isinstance(r, dict) and r["escaped"]}
    assert escaped == {}
    assert report["_written_outside"] is False
    assert set(report) - {"_written_outside"} == set(cases(*target))


@pytest.mark.skipif(os.geteuid() != 0, reason="runs as root to start an unprivileged uid (the suite already is one)")
def test_the_hostile_corpus_fails_as_an_unprivileged_user(target):
    port, secret = target
    env = {"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}
    control = run_as_nobody([sys.executable, "-c", f"import os; print(os.getuid(), open({secret!r}).read())"],
                            python_paths(), timeout=60, env=env)
    assert control.stdout.split()[0] == "65534" and "secret" in control.stdout, control.stderr  # outside: readable
    done = run_as_nobody([sys.executable, str(ROOT / "tests" / "sandbox_corpus.py"), str(port), secret],
                         python_paths(), timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["_uid"] == 65534 and report["_jail"] == "user"
    escaped = {name: r for name, r in report.items() if isinstance(r, dict) and r["escaped"]}
    assert escaped == {} and report["_written_outside"] is False


@needs_jail
def test_the_jail_shows_only_the_interpreter_and_system_libraries():
    result = run_python("import os, sys\nprint(sorted(os.listdir('/')))\nprint(os.getcwd(), os.getuid())\n"
                        "print(sys.executable)")
    listing, where, python = result.stdout.splitlines()
    shown = set(eval(listing))
    assert {"work", "dev", "usr"} <= shown and not shown & {"proc", "home", "tmp", "sys", "etc"}
    cwd, uid = where.split()
    assert cwd == "/work" and int(uid) != 0
    assert python == sandbox.interpreter()


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


def test_allocating_4_gb_fails():
    result = run_python("x = bytearray(4 * 1024 ** 3)\nprint(len(x))", timeout_s=5.0, memory_mb=512)
    assert not result.ok and result.stdout == ""
    assert "MemoryError" in result.stderr or result.killed_by is not None


def test_writing_100_mb_is_stopped_by_the_file_size_limit():
    code = ("import os\ntry:\n    with open('big', 'wb') as f:\n        f.write(b'0' * (100 * 1024 * 1024))\n"
            "except OSError as exc:\n    print(os.path.getsize('big'), exc.errno)\n    raise\n")
    result = run_python(code, timeout_s=5.0)
    assert not result.ok
    size, errno_ = map(int, result.stdout.split())
    assert size <= sandbox.FSIZE_BYTES and errno_ == 27  # EFBIG: "File too large"


def test_the_working_directory_is_removed(monkeypatch):
    made = []
    real = tempfile.mkdtemp
    monkeypatch.setattr(sandbox.tempfile, "mkdtemp", lambda **kw: made.append(real(**kw)) or made[-1])
    assert run_python("open('left.txt', 'w').write('x')\n").ok
    assert made and not any(Path(p).exists() for p in made)


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


# -- a test's verdict ---------------------------------------------------------------------

PROMPT = 'def add(a, b):\n    """Return a + b."""\n'
TEST = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert abs(candidate(0.5, 0.25) - 0.75) < 1e-9\n"
PROBLEM = Problem(id="add", question=PROMPT, gold="    return a + b\n", task="code",
                  meta={"prompt": PROMPT, "test": TEST, "entry_point": "add"})
WRONG = "def add(a, b):\n    return a - b\n"
# each a wrong solution that tries to look like a pass
CHEATS = {
    "exit() after the definition": WRONG + "exit()\n",
    "sys.exit(main()) under __main__": WRONG + "import sys\ndef main():\n    return 0\nif __name__ == '__main__':\n"
                                                "    sys.exit(main())\n",
    "sys.exit(0) at import": "import sys\n" + WRONG + "sys.exit(0)\n",
    "os._exit(0) inside the function": "import os\ndef add(a, b):\n    os._exit(0)\n",
    "raising SystemExit(0) inside the function": "def add(a, b):\n    raise SystemExit(0)\n",
    "killing itself": "import os, signal\ndef add(a, b):\n    os.kill(os.getpid(), signal.SIGKILL)\n",
    "its own check": WRONG + "def check(candidate):\n    pass\n",
    "a replaced abs and AssertionError": WRONG.replace("a - b", "7") + "import builtins\nbuiltins.abs = lambda x: 0\n"
                                         "builtins.AssertionError = type('Nothing', (Exception,), {})\n",
    "an atexit hook that exits 0": "import atexit, os\natexit.register(lambda: os._exit(0))\n" + WRONG,
    "printing what a pass prints": WRONG + "print('passed')\nimport sys\nsys.stdout.flush()\n",
    "a hang": "def add(a, b):\n    while True:\n        pass\n",
}


@pytest.mark.parametrize("name", list(CHEATS))
def test_a_wrong_solution_that_ends_early_or_tampers_is_wrong(name):
    result = type(get_checker("code"))(timeout_s=3.0).check(f"```python\n{CHEATS[name]}```", PROBLEM)
    assert not result.correct, (name, result)


def test_a_right_solution_passes_and_its_own_exit_after_the_test_does_not_matter():
    checker = get_checker("code")
    assert checker.check("```python\ndef add(a, b):\n    return a + b\n```", PROBLEM).detail == "passed"
    guarded = "import sys\ndef add(a, b):\n    return a + b\nif __name__ == '__main__':\n    sys.exit(1)\n"
    assert checker.check(f"```python\n{guarded}```", PROBLEM).correct  # its __main__ block never runs


# -- no jail -------------------------------------------------------------------------------

def test_without_a_jail_code_is_refused_unless_allowed(monkeypatch):
    monkeypatch.setattr(sandbox, "jail_mode", lambda: None)
    with pytest.raises(SandboxUnavailable, match="--unsafe-code"):
        run_python("print(1)")
    monkeypatch.setattr(sandbox, "_ALLOW_UNJAILED", True)
    result = run_python("import socket\ns = socket.socket()\nprint('made one')", timeout_s=2.0)
    assert not result.ok and "made one" not in result.stdout and "PermissionError" in result.stderr
    assert type(get_checker("code"))(timeout_s=3.0).check(CHEATS["exit() after the definition"], PROBLEM).correct \
        is False


def test_unjailed_fork_is_blocked_when_no_process_cap_works(monkeypatch):
    """As root with neither `nobody` nor a pids cgroup, the weaker guards remove fork."""
    monkeypatch.setattr(sandbox, "jail_mode", lambda: None)
    monkeypatch.setattr(sandbox, "_ALLOW_UNJAILED", True)
    monkeypatch.setattr(sandbox, "_nproc_limit", lambda uid: None)
    monkeypatch.setattr(sandbox.guards_.PidsCgroup, "create", classmethod(lambda cls, n: None))
    result = run_python("import os\nos.fork()\n", timeout_s=2.0)
    assert result.returncode == 1 and "starting processes is disabled" in result.stderr


def test_eval_on_code_without_a_jail_is_one_line_before_any_model_runs(monkeypatch, tmp_path, capsys):
    from latentray.runtime.cli import main

    monkeypatch.setattr(sandbox, "jail_mode", lambda: None)
    data = tmp_path / "code.jsonl"
    data.write_text(json.dumps({"question": PROMPT, "answer": "    return a + b\n", "test": TEST,
                                "entry_point": "add"}) + "\n")
    spec = ROOT / "topologies" / "examples" / "latent_chain.yaml"
    started = []
    monkeypatch.setattr("latentray.runtime.engine.ray_setup.ensure_ray", lambda *a, **k: started.append(1))
    assert main(["eval", str(spec), "-d", str(data), "--task", "code", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: this machine allows no sandbox") and "--unsafe-code" in err[-1]
    assert started == [] and not (tmp_path / "out").exists()
