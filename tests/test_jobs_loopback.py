"""`latentray submit|status|logs|stop` against a real Ray head on this machine, with token
authentication on: the job runs a 2-agent chain of tiny models and writes its results
where the test reads them.

The head is `ray start --head --block` in its own session with its own --temp-dir, free
ports and a generated token (RAY_AUTH_TOKEN; ~/.ray/auth_token is left alone). Its
address file lands in that temp dir, so `ray.init()` elsewhere never attaches to it;
terminating the --block process stops exactly the processes it started.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from local_cluster import end_session, free_ports, session_processes

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
DEFAULT_ADDRESS_FILE = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
USER_TOKEN = Path.home() / ".ray" / "auth_token"
QUESTIONS = ["What is 2 + 2?", "Name a prime number."]
SPEC = """\
version: 1
name: loopback_chain
models:
  base: {ref: "tiny:qwen3-64"}
agents:  # one actor hosts both: one process for the job to start
  thinker:
    model: base
    role: "Think about the problem.\\nProblem: {question}"
    latent_steps: 2
    actor: team
  answerer:
    model: base
    role: "Answer the problem.\\nProblem: {question}"
    output: text
    max_new_tokens: 4
    actor: team
topology: {type: chain, order: [thinker, answerer]}
channels: {kind: kv}
run: {batch_size: 2}
"""

def _processes_naming(text: str) -> list:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmd = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            found.append((int(cmdline.parent.name), cmd.strip()))
    return found


def _digest(path: Path):
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


@dataclass
class Head:
    proc: subprocess.Popen
    temp_dir: str
    token: str
    address: str
    gcs_port: int
    metrics_port: int
    env: dict = field(repr=False)
    log: Path = None
    default_untouched: bool = None  # /tmp/ray/ray_current_cluster does not name it; ~/.ray/auth_token as before
    leftovers: list = None

    def cli(self, *args, env=None, timeout=120) -> subprocess.CompletedProcess:
        """`latentray ARGS` in a fresh process with the head's token settings (or `env`)."""
        return self.cli_many([(args, env)], timeout)[0]

    def cli_many(self, calls, timeout=120) -> list:
        """Several `latentray` commands ((args, env or None) each) at once; their results in order."""
        cmd = [sys.executable, "-m", "latentray"]
        procs = [(args, subprocess.Popen([*cmd, *args], cwd=ROOT, env=env or self.env, text=True,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)) for args, env in calls]
        results = []
        for args, p in procs:
            out, err = p.communicate(timeout=timeout)
            results.append(subprocess.CompletedProcess([*cmd, *args], p.returncode, out, err))
        return results

    def stop(self) -> list:
        """Terminate the --block process; what is left of its session after it exits."""
        if self.leftovers is not None:
            return self.leftovers
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.leftovers = end_session(self.proc, lambda: _processes_naming(self.temp_dir))
        return self.leftovers


def _base_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"  # the job's `python` is this venv's
    env["RAY_ENABLE_ZERO_COPY_TORCH_TENSORS"] = "1"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


def _wait_ready(head: Head, timeout_s: float = 90) -> None:
    """Until `ray start` has finished (it writes its address file last) and the dashboard answers."""
    import requests

    started = Path(head.temp_dir) / "ray_current_cluster"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if head.proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {head.proc.returncode}:\n{head.log.read_text()[-3000:]}")
        try:
            r = requests.get(f"{head.address}/api/version", timeout=2,
                             headers={"Authorization": f"Bearer {head.token}"})
            if r.status_code == 200 and started.exists():
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the dashboard at {head.address} did not answer in {timeout_s:.0f} s")


@pytest.fixture(scope="module")
def loopback_head(tmp_path_factory):
    ray_bin = VENV_BIN / "ray"
    if not ray_bin.exists():
        pytest.skip(f"no `ray` next to {sys.executable}")
    (gcs, dashboard, agent_http, agent_grpc, metrics, runtime_env_agent, node_manager, object_manager,
     client_server) = free_ports(9)
    temp_dir = tempfile.mkdtemp(prefix="lrj", dir="/tmp")  # short: Ray's socket paths have a length limit
    token = secrets.token_hex(32)
    env = {**_base_env(), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    log = tmp_path_factory.mktemp("head") / "ray_start.log"
    # 2 CPUs: enough for a job's one actor; Ray starts an idle worker per CPU up front
    cmd = [str(ray_bin), "start", "--head", "--block", "--temp-dir", temp_dir, "--num-cpus", "2",
           "--port", str(gcs), "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
           "--dashboard-port", str(dashboard), "--dashboard-agent-listen-port", str(agent_http),
           "--dashboard-agent-grpc-port", str(agent_grpc), "--metrics-export-port", str(metrics),
           "--runtime-env-agent-port", str(runtime_env_agent), "--node-manager-port", str(node_manager),
           "--object-manager-port", str(object_manager), "--ray-client-server-port", str(client_server),
           "--disable-usage-stats"]
    token_before = _digest(USER_TOKEN)
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                start_new_session=True)
    head = Head(proc, temp_dir, token, f"http://127.0.0.1:{dashboard}", gcs, metrics, env, log)
    try:
        _wait_ready(head)
        # other Rays on this machine (tests run in parallel) may write the default address
        # file; what matters is that it never names this head
        named = DEFAULT_ADDRESS_FILE.read_text() if DEFAULT_ADDRESS_FILE.exists() else ""
        head.default_untouched = f":{gcs}" not in named and token_before == _digest(USER_TOKEN)
        yield head
    finally:
        leftovers = head.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert not leftovers, f"processes of the head outlived it: {leftovers}"
    assert token_before == _digest(USER_TOKEN), "~/.ray/auth_token changed"


@pytest.fixture(scope="module")
def metrics_port(loopback_head) -> int:
    """The loopback head's Prometheus export port (--metrics-export-port)."""
    return loopback_head.metrics_port


def read_answers(out_dir: Path) -> list:
    """The run's answers, one dict (id, question, answer, ...) per question."""
    with open(out_dir / "answers.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


def scrape(port: int, run: str) -> dict:
    """{(sample name, sorted edge/agent tags): value} of one run's latentray metrics."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if s.name.startswith("ray_latentray_") and s.labels.get("run") == run:
                tags = tuple(sorted((k, v) for k, v in s.labels.items() if k in ("src", "dst", "kind", "agent")))
                out[(s.name, tags)] = out.get((s.name, tags), 0.0) + s.value
    return out


def read_parquet(folder: Path) -> list:
    import pyarrow.dataset as ds

    return ds.dataset(folder, format="parquet").to_table().to_pylist()


def test_head_is_not_the_default_cluster(loopback_head, monkeypatch):
    from ray._private.services import canonicalize_bootstrap_address

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert loopback_head.default_untouched
    assert (Path(loopback_head.temp_dir) / "ray_current_cluster").exists()
    found = canonicalize_bootstrap_address(None)  # what ray.init() with no address would join
    assert found is None or not found.endswith(f":{loopback_head.gcs_port}")


def test_submit_wait_logs_status_stop(loopback_head, tmp_path):
    head = loopback_head
    spec = tmp_path / "chain.yaml"
    spec.write_text(SPEC)
    out = (tmp_path / "out").resolve()  # absolute: the job runs in a copy of the repository
    args = [a for q in QUESTIONS for a in ("-q", q)]
    done = head.cli("submit", str(spec), *args, "-o", str(out), "--quiet", "--name", "loopback-job", "--wait",
                    "--address", head.address)
    assert done.returncode == 0, done.stdout + done.stderr
    job_id = re.search(r"submitted job (\S+)", done.stderr).group(1)
    assert f"latentray logs {job_id} --follow --address {head.address}" in done.stderr
    assert f"latentray status {job_id}" in done.stderr
    assert f"job {job_id} SUCCEEDED" in done.stderr
    rows = read_answers(out)
    assert [r["question"] for r in rows] == QUESTIONS
    parquet = read_parquet(out / "answers")  # streamed as the batch finished: one row per problem
    assert sorted(r["index"] for r in parquet) == [0, 1]
    assert [r["answer"] for r in sorted(parquet, key=lambda r: r["index"])] == [r["answer"] for r in rows]
    assert [(r["src"], r["dst"], r["kind"]) for r in read_parquet(out / "trace")] == [("thinker", "answerer", "kv")]
    for i, row in enumerate(rows):  # --wait streamed the job's own output
        assert f"[{i}] Q: {row['question']}\n    A: {row['answer']!r}" in done.stdout

    logs, state, stop, missing = head.cli_many([
        (["logs", job_id, "--address", head.address], None),
        (["status", job_id, "--address", head.address], None),
        (["stop", job_id, "--address", head.address], None),
        (["status", "raysubmit_nosuchjob", "--address", head.address], None)])
    assert logs.returncode == 0, logs.stderr
    for i, row in enumerate(rows):
        assert f"[{i}] Q: {row['question']}\n    A: {row['answer']!r}" in logs.stdout
    assert state.returncode == 0 and state.stdout.startswith(f"{job_id}: SUCCEEDED"), state.stdout + state.stderr
    assert stop.returncode == 0 and "already finished (SUCCEEDED)" in stop.stdout, stop.stdout + stop.stderr
    assert missing.returncode == 2 and missing.stderr.startswith("error: no job raysubmit_nosuchjob")
    for result in (done, logs, state, stop, missing):
        assert head.token not in result.stdout + result.stderr
    # the job's metrics reached the head's Prometheus export, equal to its trace
    trace = read_parquet(out / "trace")
    want = {("ray_latentray_problems_done_total", ()): 2.0,
            ("ray_latentray_messages_total", (("dst", "answerer"), ("kind", "kv"), ("src", "thinker"))): 1.0,
            ("ray_latentray_message_bytes_total", (("dst", "answerer"), ("kind", "kv"), ("src", "thinker"))):
                float(trace[0]["bytes"])}
    got, deadline = {}, time.monotonic() + 30
    while time.monotonic() < deadline and any(got.get(k) != v for k, v in want.items()):
        got = scrape(head.metrics_port, "loopback-job")
        time.sleep(0.5)
    assert all(got.get(k) == v for k, v in want.items()), (want, got)


def test_stop_a_running_job(loopback_head, tmp_path):
    head = loopback_head
    spec = tmp_path / "chain.yaml"
    spec.write_text(SPEC)
    submitted = head.cli("submit", str(spec), "-q", "What is 1 + 1?", "--address", head.address)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()  # without --wait, stdout is the job id alone
    assert job_id.startswith("raysubmit_") and f"submitted job {job_id}" in submitted.stderr
    stop = head.cli("stop", job_id, "--address", head.address)
    assert stop.returncode == 0 and stop.stdout.strip() == f"{job_id}: STOPPED", stop.stdout + stop.stderr


def test_wrong_or_missing_token_is_a_clear_error(loopback_head):
    head = loopback_head
    wrong = secrets.token_hex(32)
    cases = {
        "refused the token from RAY_AUTH_TOKEN": {**head.env, "RAY_AUTH_TOKEN": wrong},
        "RAY_AUTH_MODE is not `token`": {k: v for k, v in head.env.items() if k != "RAY_AUTH_MODE"},
    }
    results = head.cli_many([(["status", "raysubmit_any", "--address", head.address], env) for env in cases.values()])
    for expected, result in zip(cases, results):
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, result.stderr
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
        assert "~/.ray/auth_token" in lines[0] and "Traceback" not in result.stderr
        assert head.token not in result.stderr + result.stdout and wrong not in result.stderr + result.stdout


def test_unreachable_cluster_is_a_clear_error(loopback_head):
    (port,) = free_ports(1)
    result = loopback_head.cli("status", "raysubmit_any", "--address", f"http://127.0.0.1:{port}")
    assert result.returncode == 2 and result.stderr.startswith("error: cannot reach the Ray dashboard")


def test_head_stops_with_its_processes(loopback_head):
    head = loopback_head
    assert session_processes(head.proc.pid)  # gcs, raylet, dashboard, workers...
    assert head.stop() == []
    assert head.proc.returncode is not None
