"""Warm actors: the live actors of closed sessions, kept for the next session of this
driver that would start the same ones.

An actor is wholly made by its model, its codec parts and its resources: the agents it
hosts, limits, timeouts and batch numbers travel with each call (agents/step_call.py), and
a step is a pure function of its inputs. So an actor a new session would start for the same
model, codec parts and resources can be taken from here instead, with no process start and
no model load, and it answers as a fresh one would, whichever agents it runs (eval's three
methods share their actors, and so do tests of one model).

Off unless a caller asks (`with keep_warm():`), because a parked actor holds its memory and
its resources: `latentray eval` keeps them across its methods, a test session across its
tests. Only on a Ray this process started: on a cluster other drivers use, a parked actor
would hold room their actors wait for, unseen from here. Leaving the outermost
`keep_warm` kills every parked actor. At most MAX_PARKED wait here, the longest parked
killed first; a session that must start actors kills as many more, longest parked first,
as it takes for the Ray resources it starts them with to be free, and one with
`replicas: auto` kills them all (auto grows into the free room), so parked actors never
keep this driver's runs from starting.

Only replicas placed by Ray itself are parked (a `pack` lane's placement group is removed
with its session), only ready and idle ones, and each is asked to reset (agents/actor.py)
before it is reused: one that does not answer in time is killed and started anew. A
reused actor keeps the name of the run that started it (Ray names an actor once), and a
parked actor never takes a place whose name the new session starts another actor under.
"""
from __future__ import annotations

import contextlib
import hashlib
import pickle
import threading

ANSWER_S = 30.0  # a parked actor that does not answer a reset in this long is replaced
NAME_FREE_S = 30.0  # how long to wait for a killed actor's name to be free for a new one
MAX_PARKED = 8  # per driver: each holds a model in memory

_lock = threading.Lock()
_depth = 0  # nested keep_warm() blocks open
_parked: list = []  # Replica, longest parked first


@contextlib.contextmanager
def keep_warm():
    """Within this block, closing sessions park their actors here for the next session."""
    global _depth
    with _lock:
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            drained = _evict(len(_parked)) if _depth == 0 else []
        _kill(drained)


def enabled() -> bool:
    """Inside keep_warm, on a Ray this process started: on a cluster others join, a parked
    actor would hold room their actors wait for, and this driver cannot know it."""
    from latentray.runtime.engine import ray_setup

    return _depth > 0 and ray_setup.STARTED_LOCALLY


def actor_key(options: dict, args: tuple) -> str | None:
    """What makes an actor: its .options() less the name, what `args` says of it (its model
    and codec parts), and the Ray cluster it lives in. None for one that cannot be parked
    (placed in a placement group)."""
    if "scheduling_strategy" in options and not isinstance(options["scheduling_strategy"], str):
        return None
    import ray

    context = ray.get_runtime_context()
    where = (context.gcs_address, context.get_node_id())
    kept = sorted((k, v) for k, v in options.items() if k != "name")
    return hashlib.sha256(pickle.dumps((where, kept, args))).hexdigest()


def park(replicas) -> list:
    """Park these replicas (each with its .key); return those that cannot be (to be killed),
    with those parked longest when more than MAX_PARKED would wait."""
    rest = []
    with _lock:
        for r in replicas:
            if enabled() and r.key and r.ready and r.load == 0:
                _parked.append(r)
            else:
                rest.append(r)
        rest += _evict(len(_parked) - MAX_PARKED)
    return rest


def take(keys: list, names: tuple = (), needs: list = (), agents: list = ()) -> list:
    """For each key in `keys` (one per actor wanted), (a parked replica that answered its
    reset, its ready() report), or None: that one is to be started as `names` gives at its
    position, with the Ray resources `needs` gives there ({resource: amount}). A taken actor
    is reset to host the agents `agents` gives there ({name: AgentConfig}). Parked actors are
    killed until those resources are free, and the names the caller starts are free when
    this returns."""
    import ray

    with _lock:
        picked = _pick(keys, names)
    calls = {i: _ask_reset(r, agents[i] if i < len(agents) else None) for i, r in enumerate(picked) if r is not None}
    asked = [c for c in calls.values() if c is not None]
    done = ray.wait(asked, num_returns=len(asked), timeout=ANSWER_S)[0] if asked else []
    out, failed = [], []
    for i, r in enumerate(picked):
        report = None
        if r is not None and calls[i] is not None and calls[i] in done:
            try:
                report = ray.get(calls[i])
            except Exception:  # died while parked: a fresh one takes its place
                report = None
        if r is not None and report is None:
            failed.append(r)
        out.append((r, report) if report is not None else None)
    wanted: dict = {}
    for i, got in enumerate(out):
        if got is None and i < len(needs):
            for resource, amount in needs[i].items():
                wanted[resource] = wanted.get(resource, 0.0) + amount
    starting = {names[i] for i, got in enumerate(out) if got is None and i < len(names)}
    with _lock:
        stale = _evict(_room_for(wanted))
        # a parked actor holding a name this session starts an actor under: two live actors
        # cannot share a name
        holding = [r for r in _parked if r.name in starting]
        for r in holding:
            _parked.remove(r)
    _kill(failed + stale + holding)
    _wait_names_free({r.name for r in stale + failed + holding} & starting)
    return out


def _pick(keys: list, names: tuple) -> list:
    """For each wanted key, a parked replica with that key (out of the pool), or None. One
    parked under the very name wanted at a position serves that position first; otherwise
    only one whose name this session does not start takes a position, so no two live
    actors would share a name."""
    picked = [None] * len(keys)
    passes = (lambda i, r: i < len(names) and r.name == names[i],  # its own place first
              lambda i, r: r.name not in names)  # then any place, if its name is free
    for fits in passes:
        for i, k in enumerate(keys):
            if k and picked[i] is None:
                picked[i] = next((r for r in _parked if r.key == k and fits(i, r)), None)
                if picked[i] is not None:
                    _parked.remove(picked[i])
    return picked


def clear() -> None:
    """Kill every parked actor."""
    with _lock:
        drained = _evict(len(_parked))
    _kill(drained)


def parked_count() -> int:
    with _lock:
        return len(_parked)


def _room_for(wanted: dict) -> int:
    """How many parked actors, longest parked first, must go for `wanted` to be free."""
    if not wanted or not _parked:
        return 0
    import ray

    free = dict(ray.available_resources())
    count = 0
    while count < len(_parked) and any(free.get(k, 0.0) + 1e-9 < v for k, v in wanted.items()):
        for resource, amount in _parked[count].holds:
            free[resource] = free.get(resource, 0.0) + amount
        count += 1
    return count


def _evict(count: int) -> list:
    """The `count` longest-parked replicas, out of the pool (the caller kills them)."""
    count = max(0, min(count, len(_parked)))
    out = _parked[:count]
    del _parked[:count]
    return out


def _ask_reset(replica, agents: dict | None):
    try:
        return replica.handle.reset.remote(agents)
    except Exception:  # a handle of a Ray this driver no longer runs in
        return None


def _wait_names_free(names: set) -> None:
    """Ray frees a killed actor's name once it has seen it die, which takes a moment."""
    import time

    import ray

    deadline = time.monotonic() + NAME_FREE_S
    for name in names:
        while time.monotonic() < deadline:
            try:
                ray.get_actor(name)
            except ValueError:
                break
            time.sleep(0.05)


def _kill(replicas) -> None:
    if not replicas:
        return
    import ray

    for r in replicas:
        try:
            ray.kill(r.handle, no_restart=True)
        except Exception:  # its cluster is gone: nothing left to free
            pass
