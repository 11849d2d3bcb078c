"""Replica pools: the actors that can run each agent's steps, and which one runs the next.

An agent (or a shared actor group) may have several replicas, each an actor with its own
model copy, possibly on different nodes. Any replica may run any unit's step: its inputs
are ObjectRefs, and the object store is cluster-wide. A step goes to the least-loaded live
replica of its agent, where load counts the steps submitted to it and unfinished; crossing
a node counts as one step more, so among replicas about as busy the one on the node that
already holds the step's inputs wins (also over an idle one elsewhere, when it has one step
queued), and its messages are read in place.

A replica that died for good leaves its pool (reported); the run goes on with the rest,
and fails the problems of an agent none of whose replicas are left.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

from latentray.runtime.engine.errors import RunError


class NoReplicaLeft(RunError):
    """Every replica of an agent died for good: its steps cannot run."""


@dataclass(eq=False)
class Replica:
    group: str  # actor group (the agent id, or the shared `actor:` name)
    index: int  # k in `<run>/<group>#k`
    handle: object  # the Ray actor handle
    name: str  # as the dashboard shows it
    node: str = ""  # Ray node id, from the actor's ready() report (updated after a restart)
    load: int = 0  # steps submitted to it and unfinished
    ready: bool = True  # answers calls; False while it starts or restarts (nothing is sent to it)
    key: str | None = None  # what made it (runtime/engine/warm_actors.py); None: never parked
    holds: tuple = ()  # (Ray resource, amount) pairs it was started with


@dataclass
class ReplicaPool:
    group_of: dict  # agent id -> actor group
    replicas: dict = field(default_factory=dict)  # group -> [Replica, ...]
    left: list = field(default_factory=list)  # (Replica, reason) of those that left; killed at the end

    @classmethod
    def of(cls, handles) -> "ReplicaPool":
        """A pool from {agent id: handle} (one replica each; agents on one handle share it),
        or the pool itself."""
        if isinstance(handles, ReplicaPool):
            return handles
        pool, by_actor = cls({}), {}
        for agent, handle in handles.items():
            group = by_actor.setdefault(handle._actor_id, agent)
            pool.group_of[agent] = group
            if group == agent:
                pool.add(Replica(group, 0, handle, agent))
        return pool

    def add(self, replica: Replica) -> None:
        self.replicas.setdefault(replica.group, []).append(replica)

    def of_agent(self, agent: str) -> list:
        return self.replicas.get(self.group_of[agent], [])

    def all(self) -> list:
        return [r for group in self.replicas.values() for r in group]

    def handles(self) -> list:
        return [r.handle for r in self.all()]

    def every_handle(self) -> list:
        """The live replicas' handles and those of the ones that left (a replica that never
        came back may still be pending in Ray: killing it frees what it holds)."""
        return self.handles() + [r.handle for r, _ in self.left]

    @property
    def removed(self) -> list:
        """(replica name, reason) of the replicas that left, in order."""
        return [(r.name, why) for r, why in self.left]

    def waiting_for(self, agents) -> list:
        """The agents among `agents` with no replica ready to take a step now."""
        return [a for a in agents if not any(r.ready for r in self.of_agent(a))]

    def gone(self, agents) -> list:
        """The agents among `agents` with no replica at all, ready or not."""
        return [a for a in agents if not self.of_agent(a)]

    def pick(self, agent: str, near: set = frozenset()) -> Replica:
        """The replica that runs this agent's next step: least loaded, where a replica off
        the nodes in `near` (those holding the step's inputs) counts one step more."""
        candidates = [r for r in self.of_agent(agent) if r.ready] or self.of_agent(agent)
        if not candidates:
            raise NoReplicaLeft(f"agent {agent!r} has no replica left: {self.why_gone(agent)}")
        far = [not near or r.node not in near for r in candidates]
        # a hop to another node costs like one queued step; at equal cost the local one wins
        best = min(range(len(candidates)), key=lambda i: (candidates[i].load + far[i], far[i], candidates[i].index))
        return candidates[best]

    def why_gone(self, agent: str) -> str:
        group = self.group_of[agent]
        reasons = [why for r, why in self.left if r.group == group]
        return reasons[-1] if reasons else "none was started"

    def remove(self, replica: Replica, reason: str) -> None:
        """A replica died for good: it leaves the pool, and the run says so."""
        group = self.replicas.get(replica.group, [])
        if replica in group:
            group.remove(replica)
            self.left.append((replica, reason))
            left = len(group)
            print(f"[latentray] replica {replica.name} left the run ({reason}); {left} replica(s) of "
                  f"{replica.group} left", file=sys.stderr)
