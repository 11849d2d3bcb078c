"""Scaling model: a discrete-event simulation of a latentray topology on a cluster.

It predicts the throughput a plan would reach on more nodes, GPUs and replicas than are at
hand, and what would limit it, from a profile measured on a small run.

    python benchmarks/scaling_model.py [--profile P.json] [--nodes N] [--gpus-per-node G]
        [--link-gbps X] [--link-latency-us L] [--local-gbps X] [--local-latency-us L]
        [--cores-per-node C] [--driver-serial|--no-driver-serial]
        [--placement pack|spread] [--replicas agent=K,...] [--problems N]
        [--max-in-flight K|auto|all] [--jitter F --seed S] [--json OUT]
    python benchmarks/scaling_model.py --predict-8x8 [--profile P.json] [--json OUT]
    python benchmarks/scaling_model.py --validate MEASURED.json [--json OUT]

Bandwidths on the command line are in Gbit/s (--link-gbps 10 is 10 GbE, 1.25 GB/s; 200 is
25 GB/s), in bytes/s everywhere else. Without --profile the built-in EXAMPLE_PROFILE is used: a 4-agent latent chain with
illustrative numbers (an 8B-class model, one GPU per replica, batch 8), not a measurement.

What is modelled
----------------
Profile (a JSON file, or the same dict in Python; see EXAMPLE_PROFILE):
    {"name": str,                          # optional
     "batch_size": int,                    # problems per unit
     "problems": int,                      # problems in the run
     "max_in_flight": int | "auto" | "all" | null,
                                           # units submitted and unfinished at once;
                                           # "auto": one per replica plus one; "all"/null: no limit
     "dispatch_overhead_s": float,         # per step: driver + Ray call, measured alone on a core
     "agents": {AGENT: {"replicas": int, "gpus": float}},   # gpus per replica (CPU slots on CPU)
     "steps": [{"id": str, "agent": AGENT,
                "compute_s": float,        # measured seconds of one unit's step on its replica,
                                           # running alone on a core (or on its GPU)
                "inputs": [step id, ...],  # earlier steps whose messages it reads
                "message_bytes": float}]}  # bytes of the message it sends, per unit
Steps are listed in plan order (every input before its reader). Agents that share one actor
in the spec (`actor:`) are one agent here: their replicas run each other's steps.

Cluster: N nodes x G GPUs (or CPU slots). Between nodes a message costs
latency + bytes / bandwidth; each node's NIC is one FIFO resource per direction, and a
transfer holds its sender's egress and its receiver's ingress for bytes / bandwidth (it
starts when both are free, in request order). Within a node a handoff costs
local_latency + bytes / local_bandwidth (the object store's one write: a memcpy) and holds
no shared resource. A message is fetched to a node once per unit: a second reader on that
node reads the copy already there (Ray keeps it), at no further cost.

Cores (--cores-per-node C, cluster field cores_per_node; default unlimited): a replica is
one process that uses at most one core (one torch thread). While a node runs more pieces of
work at once than it has cores, each progresses at cores / running (processor sharing),
re-evaluated whenever one starts or ends there; a step's compute_s is its time alone on a
core. Unlimited cores: every replica has its own core (or GPU), and nothing is shared.

Driver (--driver-serial / --no-driver-serial, cluster field driver_serial; default: on when
cores are limited, off when not): the driver is one process on node 0. Serial, it spends
dispatch_overhead_s of work on each step, one step at a time in submission order, on node 0's
cores (shared like a replica's), and a step can start on its replica only once the driver
has submitted it; the replica then holds it for compute_s. Off, the overhead is a fixed
delay: the step holds its replica for dispatch_overhead_s + compute_s, and the driver never
queues.

Placement: each replica needs `gpus` on one node.
    pack    replicas are placed in lanes (replica 0 of every agent in plan order, then
            replica 1, ...); a lane goes onto the first node with room for all of it, so a
            unit's pipeline stays on one node when it fits; otherwise replica by replica,
            first fit (the runtime's STRICT_PACK lane would not schedule at all).
    spread  replicas in creation order (agent by agent, in plan order) round-robin over the
            nodes, skipping full ones (Ray's SPREAD strategy).

Dispatch, as the runtime's driver does it (runtime/engine/replicas.py, ReplicaPool.pick): a
unit's steps are all submitted when the unit is (at most max_in_flight units at once; the
next one when one finishes), each to the replica of its agent with the lowest
load + crossing, where load is the steps submitted to it and unfinished, and crossing is 1
when the replica is on none of the nodes that hold the step's inputs (a node crossing costs
like one queued step); among equal scores the replica by the inputs wins, then the lower
index. So the replica by the inputs wins at equal load, and also when it has one step
more than an idle remote one. A replica runs one step at a time, strictly in submission
order (an actor's calls from one caller run in order): its next step starts when it is free
and every input of that step has arrived (and, with a serial driver, the driver has
submitted it). A step holds its replica for dispatch_overhead_s + compute_s (compute_s alone
with a serial driver), longer while it shares its node's cores. Transfers start when the
producing step ends.

Results: problems/s (problems / time from the first submission to the last step's end),
utilization of each agent (work done / (replicas x run time), work counted at full speed:
a replica slowed by sharing is limited by the cores, not by itself), of the serial driver,
of the busiest node's cores (work done / (cores x run time)) and of the busiest NIC
direction; the bottleneck (the most utilized agent, or "driver", "cores" or "network" when
that is busier than every agent and the ones before it), bytes read across nodes vs on the
reader's node, mean unit latency (submission to its last step's end), and the compute bound
for comparison: the least of replicas x batch / per-unit work of each agent, batch / the
driver's per-unit work, and all cores x batch / all per-unit work.

What it ignores: GPU memory (a replica always fits its units; the object store never
spills), stragglers and failures (compute_s is the same for every unit unless --jitter),
a smaller last batch (it costs a full unit), the driver's own CPU unless it is serial (then
its whole per-step cost is paid at submission; handling a step's end costs nothing more),
answers travelling back to the driver, model load time, Ray's own processes, contention
inside a node other than for cores (PCIe, memory bandwidth, caches) and switch congestion
beyond the two NICs of a transfer. Link speeds are what the transport reaches: Ray's object
manager over TCP rarely fills a 200 Gbit/s link; rdt with NCCL or NIXL over RDMA can.

Deterministic: the same inputs give the same numbers. --jitter F (with --seed S) scales each
step's compute by a uniform factor in [1 - F, 1 + F].

--validate MEASURED.json: a JSON list of measured runs, one object each:
    {"replicas": {AGENT: int, ...},   # overrides the profile's replica counts
     "problems_per_s": float,         # measured: problems / wall seconds from the first
                                      # submission to the last answer (models already loaded)
     "profile": {...},                # the profile above, as measured for this run
     "cluster": {"nodes": 1, "gpus_per_node": 8, "cores_per_node": 2,   # null: unlimited
                 "driver_serial": null,        # null: on when cores are limited
                 "placement": "pack",          # or at the entry's top level
                 "link_bytes_per_s": 25e9, "link_latency_s": 5e-6,
                 "local_bytes_per_s": 16e9, "local_latency_s": 0.0}}
The cluster's keys are Cluster's fields plus placement; a missing key (or cluster) takes the
command line's value, so a benchmark that writes them all is reproduced whatever the command
line says. Typically runs with 1, 2 and 4 replicas of the bottleneck agent. Printed per run:
replicas, cluster, predicted and measured problems/s, error % ((predicted - measured) /
measured), whether it is within 15%, and the predicted bottleneck.
"""
from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import sys
from collections import deque
from dataclasses import dataclass, field, fields
from pathlib import Path

# Illustrative numbers, not a measurement: an 8B-class model (36 layers, 8 KV heads of 128,
# bf16: 144 KiB of KV cache per token) on one GPU per replica, batch 8. The planner's part of
# the working memory (~190 tokens a problem) and the critic's and refiner's (~140) travel
# as KV; the judger decodes ~128 tokens and sends only text.
EXAMPLE_PROFILE = {
    "name": "example-latent-chain (illustrative numbers, not measured)",
    "batch_size": 8,
    "problems": 4096,
    "max_in_flight": "auto",
    "dispatch_overhead_s": 0.004,
    "agents": {a: {"replicas": 1, "gpus": 1} for a in ("planner", "critic", "refiner", "judger")},
    "steps": [
        {"id": "planner", "agent": "planner", "compute_s": 1.05, "inputs": [], "message_bytes": 2.2e8},
        {"id": "critic", "agent": "critic", "compute_s": 1.10, "inputs": ["planner"], "message_bytes": 1.65e8},
        {"id": "refiner", "agent": "refiner", "compute_s": 1.15, "inputs": ["planner", "critic"],
         "message_bytes": 1.65e8},
        {"id": "judger", "agent": "judger", "compute_s": 3.20, "inputs": ["planner", "critic", "refiner"],
         "message_bytes": 8192},
    ],
}

GBIT = 1e9 / 8  # bytes/s in one Gbit/s
WITHIN = 0.15  # --validate: a prediction within 15% of the measurement agrees


# ---------------------------------------------------------------- inputs

@dataclass(frozen=True)
class Step:
    id: str
    agent: str
    compute_s: float
    inputs: tuple
    message_bytes: float


@dataclass(frozen=True)
class Profile:
    steps: tuple
    replicas: dict  # agent -> replica count
    gpus: dict  # agent -> GPUs per replica
    batch_size: int
    problems: int
    max_in_flight: object  # int, "auto" or None (no limit)
    overhead_s: float
    name: str = "profile"

    @property
    def agents(self) -> list:
        """Agents in plan order (first step that uses each)."""
        return list(dict.fromkeys(s.agent for s in self.steps))

    def work_s(self, agent: str, serial_driver: bool = False) -> float:
        """Seconds one unit holds one replica of `agent`, over all its steps, alone on a core."""
        overhead = 0.0 if serial_driver else self.overhead_s
        return sum(overhead + s.compute_s for s in self.steps if s.agent == agent)


@dataclass(frozen=True)
class Cluster:
    nodes: int = 1
    gpus_per_node: float = 8
    link_bytes_per_s: float = 25e9
    link_latency_s: float = 5e-6
    local_bytes_per_s: float = 16e9  # a memcpy into the object store
    local_latency_s: float = 0.0
    cores_per_node: float = math.inf  # inf: every replica has a core (or GPU) of its own
    driver_serial: bool | None = None  # None: serial when cores are limited

    @property
    def serial_driver(self) -> bool:
        return math.isfinite(self.cores_per_node) if self.driver_serial is None else self.driver_serial

    def to_dict(self) -> dict:
        """JSON-safe: unlimited cores as null."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["cores_per_node"] = None if math.isinf(self.cores_per_node) else self.cores_per_node
        return out


def _positive(value, what: str, zero_ok: bool = False) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 or (value == 0 and not zero_ok):
        raise ValueError(f"{what} must be a {'non-negative' if zero_ok else 'positive'} number, got {value!r}")
    return value


def _max_in_flight(value):
    if value is None or value == "all":
        return None
    if value == "auto":
        return "auto"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ValueError(f"max_in_flight must be a positive integer, 'auto', 'all' or null, got {value!r}")


def _parse_steps(raw: list, agents: dict) -> tuple:
    steps, seen = [], set()
    for i, s in enumerate(raw):
        where = f"steps[{i}]"
        missing = {"id", "agent", "compute_s"} - set(s)
        if missing:
            raise ValueError(f"{where} lacks {', '.join(sorted(missing))}")
        if s.get("agent") not in agents:
            raise ValueError(f"{where}.agent {s.get('agent')!r} is not in agents")
        for src in s.get("inputs", []):
            if src not in seen:
                raise ValueError(f"{where}.inputs: {src!r} is not an earlier step")
        if s["id"] in seen:
            raise ValueError(f"{where}.id {s['id']!r} is used twice")
        seen.add(s["id"])
        steps.append(Step(s["id"], s["agent"], _positive(s["compute_s"], f"{where}.compute_s", True),
                          tuple(s.get("inputs", [])),
                          _positive(s.get("message_bytes", 0), f"{where}.message_bytes", True)))
    if not steps:
        raise ValueError("steps is empty")
    return tuple(steps)


def parse_profile(raw: dict) -> Profile:
    """A Profile from the JSON structure in the module docstring; ValueError names the field."""
    missing = {"batch_size", "problems", "agents", "steps"} - set(raw)
    if missing:
        raise ValueError(f"the profile lacks {', '.join(sorted(missing))}")
    agents = raw["agents"]
    steps = _parse_steps(raw.get("steps") or [], agents)
    unused = set(agents) - {s.agent for s in steps}
    if unused:
        raise ValueError(f"agents {sorted(unused)} run no step")
    replicas = {a: int(_positive(v.get("replicas", 1), f"agents.{a}.replicas")) for a, v in agents.items()}
    gpus = {a: _positive(v.get("gpus", 1), f"agents.{a}.gpus", True) for a, v in agents.items()}
    return Profile(steps, replicas, gpus, int(_positive(raw["batch_size"], "batch_size")),
                   int(_positive(raw["problems"], "problems")), _max_in_flight(raw.get("max_in_flight")),
                   _positive(raw.get("dispatch_overhead_s", 0.0), "dispatch_overhead_s", True),
                   raw.get("name", "profile"))


def cluster_from(raw: dict, base: Cluster = Cluster()) -> Cluster:
    """A Cluster from a dict of Cluster's field names; missing ones come from `base`."""
    names = {f.name for f in fields(Cluster)}
    unknown = set(raw) - names
    if unknown:
        raise ValueError(f"unknown cluster keys {sorted(unknown)}; known: {sorted(names)}")
    merged = {n: raw.get(n, getattr(base, n)) for n in names}
    if merged["cores_per_node"] is None:  # JSON has no infinity
        merged["cores_per_node"] = math.inf
    for n, v in merged.items():
        if n == "driver_serial":
            if v is not None and not isinstance(v, bool):
                raise ValueError(f"cluster.driver_serial must be true, false or null, got {v!r}")
        else:
            _positive(v, f"cluster.{n}", zero_ok=n.endswith("latency_s"))
    return Cluster(**merged)


# ---------------------------------------------------------------- placement

@dataclass(eq=False)
class Replica:
    agent: str
    index: int
    node: int
    queue: deque = field(default_factory=deque)  # _StepRun, submission order
    busy: bool = False
    load: int = 0  # steps queued or running here
    busy_s: float = 0.0  # work done, at full speed


def _lanes(profile: Profile, replicas: dict) -> list:
    """Lane r: replica r of every agent that has one, in plan order."""
    return [[(a, r) for a in profile.agents if replicas[a] > r] for r in range(max(replicas.values()))]


def _first_fit(free: list, need: float, start: int = 0):
    n = len(free)
    for k in range(n):
        node = (start + k) % n
        if free[node] >= need:
            return node
    return None


def _no_room(agent: str, need: float, cluster: Cluster) -> ValueError:
    return ValueError(f"no node has room for a replica of {agent} ({need:g} GPUs): "
                      f"{cluster.nodes} nodes x {cluster.gpus_per_node:g} GPUs are used up")


def place(profile: Profile, replicas: dict, cluster: Cluster, policy: str) -> list:
    """Replica objects with their nodes, agent by agent; ValueError when they do not fit."""
    free = [cluster.gpus_per_node] * cluster.nodes
    where: dict = {}
    if policy == "pack":
        for lane in _lanes(profile, replicas):
            whole = _first_fit(free, sum(profile.gpus[a] for a, _ in lane))
            for a, r in lane:
                node = whole if whole is not None else _first_fit(free, profile.gpus[a])
                if node is None:
                    raise _no_room(a, profile.gpus[a], cluster)
                free[node] -= profile.gpus[a]
                where[a, r] = node
    elif policy == "spread":
        cursor = 0
        for a in profile.agents:
            for r in range(replicas[a]):
                node = _first_fit(free, profile.gpus[a], cursor)
                if node is None:
                    raise _no_room(a, profile.gpus[a], cluster)
                free[node] -= profile.gpus[a]
                where[a, r] = node
                cursor = node + 1
    else:
        raise ValueError(f"placement must be pack or spread, got {policy!r}")
    return [Replica(a, r, where[a, r]) for a in profile.agents for r in range(replicas[a])]


# ---------------------------------------------------------------- simulation

@dataclass(eq=False)
class _StepRun:
    step: Step
    unit: "_UnitRun"
    replica: Replica
    compute_s: float
    waiting: int  # inputs not arrived yet


@dataclass(eq=False)
class _Job:
    left: float  # seconds of work still to do, at full speed
    done: object  # called with arg when it ends
    arg: object


@dataclass(eq=False)
class _Node:
    cores: float
    running: list = field(default_factory=list)  # _Job, in start order
    updated: float = 0.0  # when the running jobs' `left` was last brought up to date
    version: int = 0  # bumped at every start or end: older completion events are void
    work_s: float = 0.0  # work started here, at full speed

    @property
    def rate(self) -> float:
        return min(1.0, self.cores / len(self.running)) if self.running else 1.0


DRIVER_NODE = 0  # the driver runs on the head node
DONE_S = 1e-9  # work left below this is rounding: the job is done


@dataclass(eq=False)
class _UnitRun:
    id: int
    submitted: float
    runs: dict = field(default_factory=dict)  # step id -> _StepRun
    left: int = 0  # steps not finished
    copies: dict = field(default_factory=dict)  # (source step id, node) -> arrival of its copy there


@dataclass
class Result:
    problems: int
    max_in_flight: int | None  # the limit applied ("auto" resolved)
    run_s: float
    problems_per_s: float
    compute_bound_problems_per_s: float
    utilization: dict  # agent -> fraction
    network_utilization: float  # the busiest NIC direction
    bottleneck: str
    cross_node_bytes: float
    local_bytes: float
    mean_unit_latency_s: float
    replicas: dict
    nodes_of: dict  # agent -> node of each replica
    driver_utilization: float = 0.0  # the serial driver's; 0 when it does not queue
    core_utilization: float = 0.0  # the busiest node's cores; 0 when unlimited
    driver_serial: bool = False

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class _Simulation:
    def __init__(self, profile: Profile, cluster: Cluster, replicas: list, jitter: float, rng):
        self.p, self.c, self.jitter, self.rng = profile, cluster, jitter, rng
        self.replicas = replicas
        self.by_agent = {a: [r for r in replicas if r.agent == a] for a in profile.agents}
        self.readers = {s.id: [t.id for t in profile.steps if s.id in t.inputs] for s in profile.steps}
        self.events: list = []  # (time, seq, callback, argument)
        self.seq = 0
        self.now = 0.0
        self.nic_out_free = [0.0] * cluster.nodes
        self.nic_in_free = [0.0] * cluster.nodes
        self.nic_busy = {}  # (node, "out"|"in") -> seconds
        self.cross_bytes = self.local_bytes = 0.0
        self.latencies: list = []
        self.in_flight = 0
        self.units = 0  # submitted so far
        self.limit = self._limit()
        self.todo = math.ceil(profile.problems / profile.batch_size)  # units not submitted yet
        self.nodes = [_Node(cluster.cores_per_node) for _ in range(cluster.nodes)]
        self.serial = cluster.serial_driver
        self.driver_queue: deque = deque()  # _StepRun, submission order
        self.driver_busy = False
        self.driver_busy_s = 0.0

    def _limit(self):
        if self.p.max_in_flight == "auto":  # the runtime's auto: one per actor plus one
            return len(self.replicas) + 1
        return self.p.max_in_flight

    def at(self, time: float, callback, arg) -> None:
        heapq.heappush(self.events, (time, self.seq, callback, arg))
        self.seq += 1

    def run(self) -> None:
        self.fill()
        while self.events:
            self.now, _, callback, arg = heapq.heappop(self.events)
            callback(arg)

    # -- submission and dispatch

    def fill(self) -> None:
        while self.todo and (self.limit is None or self.in_flight < self.limit):
            self.todo -= 1
            self.units += 1
            self.submit(_UnitRun(self.units, self.now))

    def submit(self, unit: _UnitRun) -> None:
        self.in_flight += 1
        unit.left = len(self.p.steps)
        for step in self.p.steps:  # plan order: a step's sources are placed before it
            replica = self.dispatch(step, unit)
            # a serial driver's submission is one more thing the step waits for
            run = _StepRun(step, unit, replica, self._compute(step), len(step.inputs) + self.serial)
            unit.runs[step.id] = run
            replica.queue.append(run)
            replica.load += 1
            if self.serial:
                self.driver_queue.append(run)
        if self.serial:
            self.drive()
        else:
            for run in unit.runs.values():
                self.try_start(run.replica)

    def _compute(self, step: Step) -> float:
        if not self.jitter:
            return step.compute_s
        return step.compute_s * self.rng.uniform(1 - self.jitter, 1 + self.jitter)

    def dispatch(self, step: Step, unit: _UnitRun) -> Replica:
        """The runtime's pick: least loaded, a replica off the inputs' nodes counting one more."""
        near = {unit.runs[src].replica.node for src in step.inputs}  # sources are placed first

        def key(r: Replica) -> tuple:
            far = 0 if not near or r.node in near else 1
            return r.load + far, far, r.index

        return min(self.by_agent[step.agent], key=key)

    def drive(self) -> None:
        """The serial driver takes its next step to submit, if it is free."""
        if self.driver_busy or not self.driver_queue:
            return
        self.driver_busy = True
        self.work(DRIVER_NODE, self.p.overhead_s, self.submitted, self.driver_queue.popleft())

    def submitted(self, run: _StepRun) -> None:
        self.driver_busy = False
        self.driver_busy_s += self.p.overhead_s
        self.drive()
        self.arrive(run)

    # -- execution

    def _hold(self, run: _StepRun) -> float:
        """Work a step gives its replica: a serial driver has paid the overhead already."""
        return run.compute_s if self.serial else self.p.overhead_s + run.compute_s

    def try_start(self, replica: Replica) -> None:
        if replica.busy or not replica.queue or replica.queue[0].waiting:
            return  # strictly FIFO: a step waiting for inputs holds back the ones behind it
        run = replica.queue[0]
        replica.busy = True
        self.work(replica.node, self._hold(run), self.finish, run)

    def work(self, node: int, seconds: float, done, arg) -> None:
        """`seconds` of work on `node`'s cores, then done(arg)."""
        n = self.nodes[node]
        n.work_s += seconds
        if math.isinf(n.cores):  # nothing shared: ends after its own time
            self.at(self.now + seconds, done, arg)
            return
        self._advance(n)
        n.running.append(_Job(seconds, done, arg))
        self._next_end(n)

    def _advance(self, n: _Node) -> None:
        """Bring the work left of n's jobs up to now, at the rate they ran since the last change."""
        rate = n.rate
        for job in n.running:
            job.left -= (self.now - n.updated) * rate
        n.updated = self.now

    def _next_end(self, n: _Node) -> None:
        n.version += 1
        if n.running:
            job = min(n.running, key=lambda j: j.left)
            self.at(self.now + max(job.left, 0.0) / n.rate, self._end, (n, n.version, job))

    def _end(self, arg) -> None:
        n, version, job = arg
        if version != n.version:
            return  # a start or end since changed the rate: a later event stands
        self._advance(n)
        job.left = 0.0  # it is due now; rounding must not keep it running
        done = [j for j in n.running if j.left <= DONE_S]
        n.running = [j for j in n.running if j.left > DONE_S]
        self._next_end(n)
        for j in done:
            j.done(j.arg)

    def finish(self, run: _StepRun) -> None:
        replica = run.replica
        replica.queue.popleft()
        replica.busy = False
        replica.load -= 1
        replica.busy_s += self._hold(run)
        for reader in self.readers[run.step.id]:
            self.deliver(run, run.unit.runs[reader])
        run.unit.left -= 1
        if not run.unit.left:
            self.unit_done(run.unit)
        self.try_start(replica)

    def unit_done(self, unit: _UnitRun) -> None:
        self.latencies.append(self.now - unit.submitted)
        self.in_flight -= 1
        self.fill()

    def arrive(self, run: _StepRun) -> None:
        run.waiting -= 1
        self.try_start(run.replica)

    # -- messages

    def deliver(self, src: _StepRun, dst: _StepRun) -> None:
        size, a, b = src.step.message_bytes, src.replica.node, dst.replica.node
        key = (src.step.id, b)
        if a == b:
            self.local_bytes += size
            arrival = self.now + self.c.local_latency_s + size / self.c.local_bytes_per_s
        elif key in src.unit.copies:  # already fetched to this node for another reader
            self.local_bytes += size
            arrival = src.unit.copies[key]
        else:
            self.cross_bytes += size
            arrival = src.unit.copies[key] = self.transfer(a, b, size)
        self.at(arrival, self.arrive, dst)

    def transfer(self, a: int, b: int, size: float) -> float:
        """Reserve a's egress and b's ingress (FIFO, in request order); the arrival time."""
        hold = size / self.c.link_bytes_per_s
        start = max(self.now, self.nic_out_free[a], self.nic_in_free[b])
        self.nic_out_free[a] = self.nic_in_free[b] = start + hold
        for nic in ((a, "out"), (b, "in")):
            self.nic_busy[nic] = self.nic_busy.get(nic, 0.0) + hold
        return start + hold + self.c.link_latency_s

    # -- results

    def result(self) -> Result:
        run_s = self.now
        util = {a: sum(r.busy_s for r in rs) / (len(rs) * run_s) if run_s else 0.0
                for a, rs in self.by_agent.items()}
        net = max(self.nic_busy.values(), default=0.0) / run_s if run_s else 0.0
        driver = self.driver_busy_s / run_s if run_s else 0.0
        cores = max(n.work_s / (n.cores * run_s) if run_s else 0.0 for n in self.nodes)
        bottleneck = max(util, key=util.get)
        busiest = util[bottleneck]
        for name, u in (("driver", driver), ("cores", cores), ("network", net)):
            if u > busiest:
                bottleneck, busiest = name, u
        return Result(problems=self.p.problems, max_in_flight=self.limit, run_s=run_s,
                      problems_per_s=self.p.problems / run_s if run_s else math.inf,
                      compute_bound_problems_per_s=self.bound(), utilization=util, network_utilization=net,
                      bottleneck=bottleneck, cross_node_bytes=self.cross_bytes, local_bytes=self.local_bytes,
                      mean_unit_latency_s=sum(self.latencies) / len(self.latencies),
                      replicas={a: len(rs) for a, rs in self.by_agent.items()},
                      nodes_of={a: [r.node for r in rs] for a, rs in self.by_agent.items()},
                      driver_utilization=driver, core_utilization=cores, driver_serial=self.serial)

    def bound(self) -> float:
        """Problems/s no run can pass: each agent's replicas, the serial driver, all cores."""
        p, batch = self.p, self.p.batch_size
        bounds = [len(rs) * batch / p.work_s(a, self.serial) for a, rs in self.by_agent.items()
                  if p.work_s(a, self.serial)]
        driver_work = len(p.steps) * p.overhead_s
        if self.serial and driver_work:
            bounds.append(batch / driver_work)
        all_work = sum(s.compute_s for s in p.steps) + driver_work
        if all_work and math.isfinite(self.c.cores_per_node):
            bounds.append(self.c.nodes * self.c.cores_per_node * batch / all_work)
        return min(bounds, default=math.inf)


def simulate(profile, cluster: Cluster = Cluster(), placement: str = "pack", replicas: dict | None = None,
             jitter: float = 0.0, seed: int | None = None) -> Result:
    """Run the model once. profile: a Profile or its dict; replicas: {agent: count} overriding
    the profile's; jitter with a seed: each step's compute scaled by U(1 - jitter, 1 + jitter)."""
    profile = profile if isinstance(profile, Profile) else parse_profile(profile)
    counts = dict(profile.replicas)
    for agent, k in (replicas or {}).items():
        if agent not in counts:
            raise ValueError(f"replicas: {agent!r} is not an agent of the profile ({', '.join(counts)})")
        counts[agent] = int(_positive(k, f"replicas.{agent}"))
    if jitter and seed is None:
        raise ValueError("jitter needs a seed, so the run can be repeated")
    sim = _Simulation(profile, cluster, place(profile, counts, cluster, placement), jitter, random.Random(seed))
    sim.run()
    return sim.result()


# ---------------------------------------------------------------- allocations

def proportional_replicas(profile: Profile, total_gpus: float) -> dict:
    """Replicas per agent proportional to its per-unit work, at least one each, using at most
    total_gpus (largest remainders get the GPUs left after rounding down)."""
    agents = profile.agents
    scale = total_gpus / sum(profile.work_s(a) * profile.gpus[a] for a in agents)
    ideal = {a: profile.work_s(a) * scale for a in agents}
    counts = {a: max(1, math.floor(ideal[a])) for a in agents}
    left = total_gpus - sum(counts[a] * profile.gpus[a] for a in agents)
    for a in sorted(agents, key=lambda a: ideal[a] - math.floor(ideal[a]), reverse=True):
        if profile.gpus[a] <= left:
            counts[a] += 1
            left -= profile.gpus[a]
    return counts


def equal_replicas(profile: Profile, total_gpus: float) -> dict:
    per = total_gpus / sum(profile.gpus[a] for a in profile.agents)
    return {a: max(1, math.floor(per)) for a in profile.agents}


# ---------------------------------------------------------------- printing

def _fmt_replicas(counts: dict) -> str:
    return ",".join(f"{a}={k}" for a, k in counts.items())


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def _cores(c: Cluster) -> str:
    return f"{c.cores_per_node:g} core{'s' * (c.cores_per_node != 1)}"


def _fmt_cluster(c: Cluster) -> str:
    cores = f" x {_cores(c)}" if math.isfinite(c.cores_per_node) else ""
    return f"{c.nodes} node{'s' * (c.nodes != 1)}{cores}"


def print_result(profile: Profile, cluster: Cluster, placement: str, r: Result) -> None:
    print(f"profile: {profile.name} ({len(profile.steps)} steps, batch {profile.batch_size}, "
          f"{profile.problems} problems, max_in_flight {profile.max_in_flight})")
    cores = f"{_cores(cluster)} per node" if math.isfinite(cluster.cores_per_node) else "a core per replica"
    print(f"cluster: {cluster.nodes} nodes x {cluster.gpus_per_node:g} GPUs, {cores}, link "
          f"{cluster.link_bytes_per_s / GBIT:g} Gbit/s ({cluster.link_bytes_per_s / 1e9:g} GB/s), "
          f"{cluster.link_latency_s * 1e6:g} us; placement {placement}; driver "
          f"{'serial' if r.driver_serial else 'overhead as a fixed delay'}")
    for a, nodes in r.nodes_of.items():
        print(f"  {a}: {len(nodes)} replica{'s' * (len(nodes) != 1)} on nodes {sorted(set(nodes))}")
    print(f"throughput: {r.problems_per_s:.3f} problems/s (compute bound {r.compute_bound_problems_per_s:.3f})")
    print(f"mean unit latency: {r.mean_unit_latency_s:.3f} s; run {r.run_s:.1f} s")
    if r.max_in_flight is not None:  # Little's law: at most limit units per unit latency
        print(f"in-flight bound: {r.max_in_flight} units x batch {profile.batch_size} / mean unit latency = "
              f"{r.max_in_flight * profile.batch_size / r.mean_unit_latency_s:.3f} problems/s")
    util = ", ".join(f"{a} {u:.0%}" for a, u in r.utilization.items())
    extra = (f"; driver {r.driver_utilization:.0%}" * r.driver_serial
             + f"; busiest node's cores {r.core_utilization:.0%}" * math.isfinite(cluster.cores_per_node))
    print(f"utilization: {util}{extra}; busiest NIC {r.network_utilization:.0%}")
    print(f"bottleneck: {r.bottleneck}")
    print(f"bytes: {_gb(r.cross_node_bytes)} across nodes, {_gb(r.local_bytes)} on the reader's node")


# ---------------------------------------------------------------- modes

LINKS_8X8 = (("RDMA 25 GB/s", 25e9, 5e-6), ("10 GbE 1.25 GB/s", 1.25e9, 50e-6))


def predict_8x8(profile: Profile, placements=("pack", "spread")) -> list:
    """Rows for 8 nodes x 8 GPUs at both link speeds, for a few replica allocations."""
    total = 64
    allocations = (("1 each", {a: 1 for a in profile.agents}),
                   ("equal, 64 GPUs", equal_replicas(profile, total)),
                   ("proportional, 64 GPUs", proportional_replicas(profile, total)))
    rows = []
    for label, counts in allocations:
        for placement in placements:
            for link, bw, lat in LINKS_8X8:
                cluster = Cluster(nodes=8, gpus_per_node=8, link_bytes_per_s=bw, link_latency_s=lat)
                r = simulate(profile, cluster, placement, counts)
                rows.append({"allocation": label, "replicas": counts, "placement": placement, "link": link,
                             "problems_per_s": r.problems_per_s, "bottleneck": r.bottleneck,
                             "utilization": r.utilization, "network_utilization": r.network_utilization,
                             "cross_node_bytes": r.cross_node_bytes, "max_in_flight": r.max_in_flight,
                             "mean_unit_latency_s": r.mean_unit_latency_s,
                             "compute_bound_problems_per_s": r.compute_bound_problems_per_s})
    return rows


def print_predict(profile: Profile, rows: list) -> None:
    print(f"profile: {profile.name}; 8 nodes x 8 GPUs")
    print(f"{'allocation':<22} {'placement':<8} {'link':<17} {'problems/s':>10} {'bound':>8} {'latency':>8}  "
          f"{'bottleneck':<10} {'busiest NIC':>11} {'across nodes':>13}")
    for row in rows:
        print(f"{row['allocation']:<22} {row['placement']:<8} {row['link']:<17} {row['problems_per_s']:>10.2f} "
              f"{row['compute_bound_problems_per_s']:>8.2f} {row['mean_unit_latency_s']:>7.2f}s  "
              f"{row['bottleneck']:<10} {row['network_utilization']:>11.0%} {_gb(row['cross_node_bytes']):>13}")
    for label, row in {r["allocation"]: r for r in rows}.items():
        print(f"  {label}: {_fmt_replicas(row['replicas'])}; max_in_flight {row['max_in_flight']}")
    # Little's law: with every agent below full use, the units in flight set the rate
    print("bound: replicas x batch / per-unit work of the slowest agent. Below it with no agent near 100%,\n"
          "the rate is at most max_in_flight x batch / unit latency (try --max-in-flight).")


def validate(entries: list, cluster: Cluster, placement: str) -> list:
    """Predicted vs measured for each entry of a MEASURED.json list (format: module docstring)."""
    rows = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not {"replicas", "problems_per_s", "profile"} <= set(e):
            raise ValueError(f"entry {i}: needs replicas, problems_per_s and profile")
        measured = _positive(e["problems_per_s"], f"entry {i}: problems_per_s")
        raw = dict(e.get("cluster") or {})
        inner, outer = raw.pop("placement", None), e.get("placement")
        if inner and outer and inner != outer:
            raise ValueError(f"entry {i}: placement {outer!r} and cluster.placement {inner!r} differ")
        where = outer or inner or placement
        c = cluster_from(raw, cluster)
        r = simulate(e["profile"], c, where, e["replicas"])
        error = (r.problems_per_s - measured) / measured
        rows.append({"replicas": r.replicas, "cluster": c.to_dict(), "placement": where,
                     "predicted": r.problems_per_s, "measured": measured, "error": error,
                     "within": abs(error) <= WITHIN, "bottleneck": r.bottleneck})
    return rows


def print_validate(rows: list) -> None:
    width = max([len(_fmt_replicas(r["replicas"])) for r in rows] + [8])
    clusters = [_fmt_cluster(cluster_from(r["cluster"])) for r in rows]
    cw = max([len(c) for c in clusters] + [7])
    print(f"{'replicas':<{width}} {'cluster':<{cw}} {'predicted':>10} {'measured':>10} {'error':>8}  "
          f"within {WITHIN:.0%}  bottleneck")
    for r, c in zip(rows, clusters):
        print(f"{_fmt_replicas(r['replicas']):<{width}} {c:<{cw}} {r['predicted']:>10.3f} {r['measured']:>10.3f} "
              f"{r['error']:>+8.1%}  {'yes' if r['within'] else 'no':<10}  {r['bottleneck']}")
    print(f"{sum(r['within'] for r in rows)}/{len(rows)} within {WITHIN:.0%}")


# ---------------------------------------------------------------- command line

def parse_replicas(text: str) -> dict:
    counts = {}
    for part in filter(None, text.split(",")):
        agent, sep, k = part.partition("=")
        if not sep or not k.strip().isdigit() or int(k) < 1:
            raise ValueError(f"--replicas: {part!r} is not agent=K with K >= 1")
        counts[agent.strip()] = int(k)
    return counts


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Without --profile: the built-in example profile, a 4-agent latent chain (planner, critic, "
               "refiner, judger) with illustrative numbers (1.05/1.10/1.15/3.20 s per unit of 8, 220/165/165 MB "
               "KV messages): an example, not a measurement. The profile format is in the module docstring.")
    p.add_argument("--profile", type=Path, help="profile JSON (default: the built-in example)")
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--gpus-per-node", type=float, default=8, help="GPUs (or CPU slots) per node")
    p.add_argument("--link-gbps", type=float, default=200,
                   help="link bandwidth between nodes in Gbit/s (200 = 25 GB/s; 10 = 10 GbE = 1.25 GB/s)")
    p.add_argument("--link-latency-us", type=float, default=5)
    p.add_argument("--local-gbps", type=float, default=128,
                   help="same-node handoff bandwidth in Gbit/s (default 128 = 16 GB/s, a memcpy)")
    p.add_argument("--local-latency-us", type=float, default=0)
    p.add_argument("--cores-per-node", type=float,
                   help="cores per node; more steps at once share them (default: unlimited, a core each)")
    p.add_argument("--driver-serial", action=argparse.BooleanOptionalAction, default=None,
                   help="the driver as one process paying the dispatch overhead step by step on node 0 "
                        "(default: on when --cores-per-node is given)")
    p.add_argument("--placement", choices=("pack", "spread"), default="pack")
    p.add_argument("--replicas", type=str, default="", help="agent=K,... (overrides the profile's)")
    p.add_argument("--problems", type=int, help="override the profile's problem count")
    p.add_argument("--max-in-flight", help="override the profile's: an integer, auto or all")
    p.add_argument("--jitter", type=float, default=0.0, help="scale each step's compute by U(1-F, 1+F); needs --seed")
    p.add_argument("--seed", type=int)
    p.add_argument("--predict-8x8", action="store_true",
                   help="8 nodes x 8 GPUs at 25 GB/s and 1.25 GB/s links, for a few replica allocations")
    p.add_argument("--validate", type=Path, metavar="MEASURED.json", help="predicted vs measured throughput")
    p.add_argument("--json", type=Path, help="write the results here")
    return p


def _load_profile(args) -> Profile:
    raw = json.loads(args.profile.read_text()) if args.profile else dict(EXAMPLE_PROFILE)
    if args.problems is not None:
        raw["problems"] = args.problems
    if args.max_in_flight is not None:
        raw["max_in_flight"] = int(args.max_in_flight) if args.max_in_flight.isdigit() else args.max_in_flight
    return parse_profile(raw)


def _cluster(args) -> Cluster:
    return cluster_from({"nodes": args.nodes, "gpus_per_node": args.gpus_per_node,
                         "link_bytes_per_s": args.link_gbps * GBIT, "link_latency_s": args.link_latency_us * 1e-6,
                         "local_bytes_per_s": args.local_gbps * GBIT, "local_latency_s": args.local_latency_us * 1e-6,
                         "cores_per_node": args.cores_per_node, "driver_serial": args.driver_serial})


def main(argv=None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    if args.jitter and args.seed is None:
        p.error("--jitter needs --seed")
    try:
        cluster = _cluster(args)
        if args.validate:
            out = validate(json.loads(args.validate.read_text()), cluster, args.placement)
            print_validate(out)
        else:
            profile = _load_profile(args)
            if not args.profile:
                print("(built-in example profile: illustrative numbers, not a measurement)")
            if args.predict_8x8:
                out = predict_8x8(profile)
                print_predict(profile, out)
            else:
                r = simulate(profile, cluster, args.placement, parse_replicas(args.replicas), args.jitter, args.seed)
                print_result(profile, cluster, args.placement, r)
                out = r.to_dict()
    except (ValueError, KeyError, OSError, json.JSONDecodeError) as exc:
        print(f"scaling_model: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
