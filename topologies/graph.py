"""graph: explicit edges, each with its own kind, codec, transport and compression.

Every agent on an edge runs once, in dependency order (ties: spec order), reading its
incoming edges in the order they are listed. A cycle runs only with `rounds: R`: the
agents of a cycle then run R times, round by round in spec order; an edge inside the
cycle from an agent that ran earlier in the round delivers that round's message, one
from a later agent (or itself) delivers the previous round's. Edges entering a cycle
feed its first round; edges leaving it carry its last round. Cycle steps whose message
nobody reads (the tail of the last round) are dropped.

Parameters:
  edges:  [{src, dst, kind?, codec?, transport?, compression?}] (unset fields come from
          `channels` and its per-edge overrides)
  rounds: how many times cycles run; required when the edges form a cycle
  answer: the agent that decodes the answer (default: the one agent that sends nothing)
  memory: accumulate | previous, as for chain (kv messages: all slots or own slots; text
          messages with accumulate: every upstream agent's text, in order)
A step's round is its depth: 1 + the largest round among the steps it reads.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from .edges import make_edge
from .errors import SpecError
from .plan import Plan, Step
from .roles import check_agent, with_emits
from .spec import GraphSpec, KindName
from .text_memory import accumulate_texts
from .validate import check_codec


class GraphEdge(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    src: str
    dst: str
    kind: Optional[KindName] = None
    transport: Optional[Literal["object_store", "rdt"]] = None
    codec: Optional[str] = None
    compression: Optional[tuple[str, ...]] = None


class GraphParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["graph"] = "graph"
    edges: tuple[GraphEdge, ...] = Field(min_length=1)
    rounds: Optional[int] = Field(None, ge=1, le=64)
    answer: Optional[str] = None
    memory: Literal["accumulate", "previous"] = "accumulate"


def _edge(spec: GraphSpec, e: GraphEdge, src_step: str, dst_step: str):
    return make_edge(spec, src_step, dst_step, e.src, e.dst, kind=e.kind, transport=e.transport, codec=e.codec,
                     compression=e.compression)


def _components(nodes: list, succ: dict) -> list:
    """Strongly connected components in dependency order (ties: spec order)."""
    reach = {}
    for n in nodes:
        seen, todo = set(), list(succ[n])
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo.extend(succ[m])
        reach[n] = seen
    comps, placed = [], set()
    for n in nodes:
        if n not in placed:
            comp = [m for m in nodes if m == n or (m in reach[n] and n in reach[m])]
            placed.update(comp)
            comps.append(comp)
    ordered, done = [], set()
    while comps:  # Kahn: a component goes once everything feeding it has gone
        ready = next(c for c in comps if all(p in done or p in c for m in c for p in nodes if m in succ[p]))
        comps.remove(ready)
        ordered.append(ready)
        done.update(ready)
    return ordered


def graph(spec: GraphSpec, params: GraphParams) -> Plan:
    pairs = set()
    for i, e in enumerate(params.edges):
        check_agent(spec, e.src, f"topology.edges.{i}.src")
        check_agent(spec, e.dst, f"topology.edges.{i}.dst")
        if (e.src, e.dst) in pairs:
            raise SpecError(f"duplicate edge {e.src} -> {e.dst}", field=f"topology.edges.{i}",
                            fix="list each edge once")
        pairs.add((e.src, e.dst))
        if e.codec is not None:
            check_codec(e.codec, "<spec>", f"topology.edges.{i}.codec")
    used = {a for e in params.edges for a in (e.src, e.dst)}
    nodes = [a for a in spec.agents if a in used]
    succ = {n: {e.dst for e in params.edges if e.src == n} for n in nodes}
    comps = _components(nodes, succ)
    cycles = [c for c in comps if len(c) > 1 or c[0] in succ[c[0]]]
    if cycles and params.rounds is None:
        loop = " -> ".join(cycles[0] + [cycles[0][0]])
        raise SpecError(f"cycle {loop} has no round bound", field="topology.rounds",
                        fix="set topology.rounds to how many times the cycle runs")
    if not cycles and (params.rounds or 1) > 1:
        raise SpecError("rounds only applies to a graph with a cycle", field="topology.rounds",
                        fix="remove topology.rounds")
    answer = _answer(spec, params, nodes, succ)
    return _unroll(spec, params, comps, cycles, answer)


def _answer(spec: GraphSpec, params: GraphParams, nodes: list, succ: dict) -> str:
    if params.answer is not None:
        check_agent(spec, params.answer, "topology.answer")
        if params.answer not in nodes:
            raise SpecError(f"answer agent {params.answer!r} is on no edge", field="topology.answer",
                            fix="add an edge into it")
        if succ[params.answer]:
            raise SpecError(f"answer agent {params.answer!r} sends messages", field="topology.answer",
                            fix="the answer agent must be a sink: remove its outgoing edges")
        return params.answer
    sinks = [n for n in nodes if not succ[n]]
    if len(sinks) != 1:
        found = ", ".join(sinks) if sinks else "none"
        raise SpecError(f"cannot tell which agent answers (agents that send nothing: {found})",
                        field="topology.answer", fix="set topology.answer to the agent that decodes the answer")
    return sinks[0]


def _unroll(spec: GraphSpec, params: GraphParams, comps: list, cycles: list, answer: str) -> Plan:
    rounds = params.rounds or 1
    scope = "all" if params.memory == "accumulate" else "own"
    last = {}  # agent -> id of its last step (what leaves its component)
    steps: list = []
    for comp in comps:
        cyclic = comp in cycles
        for r in range(1, (rounds if cyclic else 1) + 1):
            for a in comp:
                sid = f"r{r}/{a}" if cyclic else a
                inputs = []
                for e in params.edges:
                    if e.dst != a:
                        continue
                    if e.src not in comp:
                        if r == 1:
                            inputs.append(_edge(spec, e, last[e.src], sid))
                    elif comp.index(e.src) < comp.index(a):
                        inputs.append(_edge(spec, e, f"r{r}/{e.src}", sid))
                    elif r > 1:
                        inputs.append(_edge(spec, e, f"r{r - 1}/{e.src}", sid))
                steps.append(Step(id=sid, agent=a, action="text" if a == answer else "latent",
                                  inputs=tuple(inputs), kv_scope=scope))
            for a in comp:
                last[a] = f"r{r}/{a}" if cyclic else a
    steps = _drop_unread_cycle_tail(steps, answer, cycles)
    if params.memory == "accumulate":
        steps = accumulate_texts(spec, steps)
    depth: dict = {}
    for i, s in enumerate(steps):
        depth[s.id] = 1 + max((depth[e.src] for e in s.inputs), default=0)
        steps[i] = replace(s, round=depth[s.id])
    return Plan(topology="graph", steps=with_emits(steps, spec.channels.kind), answer_steps=(answer,),
                rounds=max(depth.values()))


def _drop_unread_cycle_tail(steps: list, answer: str, cycles: list) -> list:
    in_cycle = {a for c in cycles for a in c}
    while True:
        read = {e.src for s in steps for e in s.inputs}
        dead = [s for s in steps if s.agent in in_cycle and s.id not in read and s.id != answer]
        if not dead:
            return steps
        steps = [s for s in steps if s not in dead]

