"""A real multi-node Ray on this one host, for tests and benchmarks: one `ray start --block`
process per node, each with its own session, temporary directory, ports and resources, every
node bound to 127.0.0.1 (Ray may name this host by its own address: it is still this host).

Token authentication is on, with a generated token passed in the environment, so
~/.ray/auth_token and /tmp/ray are left alone. Each node's processes live in the session
of its `ray start` process: `kill(node)` SIGKILLs that session (a node lost at once, as a
crashed machine), `stop()` ends every node this object started, and nothing else.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def free_ports(n: int) -> list:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def session_processes(sid: int) -> list:
    """(pid, command line) of the live processes in session `sid` (everything one
    `ray start` started)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append((int(stat.parent.name), cmd.strip()))
    return found


def end_session(proc: subprocess.Popen, extra=lambda: []) -> list:
    """Wait for a terminated `ray start --block` process (killing it after 45 s), give what
    it started 15 s to exit, then SIGKILL what is left of its session and what `extra()`
    finds then ((pid, command) pairs); returns those leftovers."""
    try:
        proc.wait(timeout=45)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 15
    while session_processes(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.25)
    left = session_processes(proc.pid) + list(extra())
    for pid, _ in left:  # only processes of this session (and those named)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


@dataclass
class Node:
    name: str
    proc: subprocess.Popen
    temp_dir: str
    resources: dict
    log: Path
    id: str = ""  # Ray node id, once it has joined
    lost: bool = False  # killed on purpose (kill): not expected back
    start: tuple = ()  # (args, num_cpus, env) it was started with, to start it again
    attempts: int = 1

    def alive(self) -> bool:
        return self.proc.poll() is None


# What `ray start` prints when its raylet did not register with the GCS within Ray's fixed
# 30 s: on a loaded two-core machine (a suite beside it) that can happen; a second start works.
STARTUP_TIMEOUT = "timed out during startup"
START_ATTEMPTS = 3


@dataclass
class LocalCluster:
    workdir: Path
    token: str = field(default_factory=lambda: secrets.token_hex(32))
    nodes: list = field(default_factory=list)
    gcs_port: int = 0
    dashboard_port: int = 0
    object_store_bytes: int = 0  # per node; 0 leaves Ray's default

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def env(self, **extra) -> dict:
        """The environment of a process that joins this cluster (a driver, or a node)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
        env.update(RAY_ENABLE_ZERO_COPY_TORCH_TENSORS="1", RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token",
                   RAY_AUTH_TOKEN=self.token, PYTHONPATH=str(ROOT))
        env.update(extra)
        return env

    def _launch(self, name: str, args: list, resources: dict, num_cpus: float, env: dict) -> tuple:
        """(process, temp dir, log) of one `ray start` of a node, on fresh ports."""
        temp_dir = tempfile.mkdtemp(prefix=f"lr{name[:3]}", dir="/tmp")  # short: socket paths have a limit
        agent_http, agent_grpc, metrics, runtime_env = free_ports(4)
        cmd = [str(VENV_BIN / "ray"), "start", "--block", "--temp-dir", temp_dir, "--node-ip-address", "127.0.0.1",
               "--num-cpus", str(num_cpus), "--resources", json.dumps(resources),
               "--dashboard-agent-listen-port", str(agent_http), "--dashboard-agent-grpc-port", str(agent_grpc),
               "--metrics-export-port", str(metrics), "--runtime-env-agent-port", str(runtime_env),
               "--disable-usage-stats", *args]
        if self.object_store_bytes:
            cmd += ["--object-store-memory", str(self.object_store_bytes)]
        log = self.workdir / f"{name}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                    start_new_session=True)
        return proc, temp_dir, log

    def _start(self, name: str, args: list, resources: dict, num_cpus: float, env: dict) -> Node:
        proc, temp_dir, log = self._launch(name, args, resources, num_cpus, env)
        node = Node(name, proc, temp_dir, resources, log, start=(args, num_cpus, env))
        self.nodes.append(node)
        return node

    def _start_again(self, node: Node) -> bool:
        """Start a node whose `ray start` gave up waiting for its raylet to register, once
        what that start left is gone; False if it failed otherwise or too often."""
        if node.attempts >= START_ATTEMPTS or STARTUP_TIMEOUT not in node.log.read_text():
            return False
        end_session(node.proc)
        shutil.rmtree(node.temp_dir, ignore_errors=True)
        node.proc, node.temp_dir, node.log = self._launch(node.name, node.start[0], node.resources, *node.start[1:])
        node.attempts += 1
        return True

    def start_head(self, resources: dict | None = None, num_cpus: float = 1, **env) -> Node:
        self.gcs_port, self.dashboard_port = free_ports(2)
        args = ["--head", "--port", str(self.gcs_port), "--include-dashboard", "true",
                "--dashboard-host", "127.0.0.1", "--dashboard-port", str(self.dashboard_port)]
        return self._start("head", args, {"head": 1, **(resources or {})}, num_cpus, self.env(**env))

    def add_node(self, name: str, resources: dict | None = None, num_cpus: float = 1, **env) -> Node:
        """A worker node offering `resources` plus a label of its own name (so a test can pin an actor to it)."""
        return self._start(name, ["--address", self.address], {name: 1, **(resources or {})}, num_cpus,
                           self.env(**env))

    def wait_ready(self, timeout_s: float = 300) -> None:
        """Until every started node is alive in the cluster, each with its resources. It
        returns as soon as they are; the bound is wide because on 2 cores with another Ray
        running beside the suite, three restarted nodes took more than 120 s to join."""

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for node in self.nodes:
                if not node.alive() and not node.lost and not self._start_again(node):
                    raise RuntimeError(f"ray start of {node.name} exited:\n{node.log.read_text()[-3000:]}")
            found = self.node_ids()
            live = [n for n in self.nodes if not n.lost]
            if all(n.name in found for n in live):
                for n in live:
                    n.id = found[n.name]
                return
            time.sleep(0.5)
        raise RuntimeError(f"the cluster's nodes did not all join in {timeout_s:.0f} s")

    def node_ids(self) -> dict:
        """{node name: Ray node id} of the live nodes, from the head's state API over HTTP
        (no driver here, and no `ray list` process per call)."""
        import urllib.error
        import urllib.request

        request = urllib.request.Request(f"{self.dashboard}/api/v0/nodes?detail=1&limit=100",
                                         headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                body = json.loads(reply.read())
        except (urllib.error.URLError, OSError, json.JSONDecodeError):  # the head is still starting
            return {}
        rows = (body.get("data") or {}).get("result") or {}
        rows = rows.get("result", []) if isinstance(rows, dict) else rows
        found = {}
        for row in rows:
            if row.get("state") != "ALIVE":
                continue
            resources = row.get("resources_total") or {}
            for node in self.nodes:
                if node.name in resources:
                    found[node.name] = row["node_id"]
        return found

    def kill(self, node: Node) -> None:
        """Lose a node at once: SIGKILL every process of its session."""
        for pid, _ in session_processes(node.proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        node.proc.wait(timeout=30)
        node.lost = True

    def stop(self) -> list:
        """End every node (workers first); returns the processes that outlived their node."""
        leftovers = []
        for node in reversed(self.nodes):
            if node.alive():
                node.proc.send_signal(signal.SIGTERM)
        for node in reversed(self.nodes):
            leftovers += end_session(node.proc)
            shutil.rmtree(node.temp_dir, ignore_errors=True)
        return leftovers
