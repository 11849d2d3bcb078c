"""Plan: what the engine runs, as plain frozen data (no tensors, no Ray).

A plan is an ordered list of steps; each step is one agent call for one batch. A step
reads the messages of earlier steps (its inbox, in `inputs` order) and either emits a
latent message (`action="latent"`), decodes text (`action="text"`), or combines its
inbox's hidden/embeds messages without running the model (`action="aggregate"`, the hub).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Edge:
    src: str  # producing step id
    dst: str  # consuming step id
    kind: str  # kv | hidden | embeds | text
    transport: str = "object_store"
    codec: str = "identity"
    compression: tuple = ()
    # the producing agent whose channels.edges override set this edge, where it is not the
    # producer itself: a chain's delta memory reads each earlier part with the settings of
    # the reader's own incoming hop
    settings_from: str = ""


@dataclass(frozen=True)
class Step:
    id: str  # unique, e.g. "planner" or "r1/critic"
    agent: str
    action: str  # "latent" | "text" | "aggregate"
    inputs: tuple = ()  # tuple[Edge, ...], inbox order
    round: int = 0
    emit: str = "kv"  # message kind a latent step emits
    kv_scope: str = "all"  # kv messages: "all" slots of the working memory, or "own" slots only
    kv_merge: str = "join"  # several kv inputs: "join" side by side (RoPE re-rotation), or "concat":
    #                         the parts of one working memory, in slot order (a chain's delta memory)
    aggregate: str = ""  # action "aggregate": "concat" | "mean" | "weighted"


@dataclass(frozen=True)
class Plan:
    topology: str
    steps: tuple  # tuple[Step, ...] in an order where every input comes first
    answer_steps: tuple  # step ids whose text is the answer
    answer_mode: str = "single"  # "single" | "majority"
    rounds: int = 1

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    @property
    def edges(self) -> list:
        return [e for s in self.steps for e in s.inputs]

    def messages_per_round(self) -> dict:
        """round of the receiving step -> number of messages delivered to it."""
        counts: dict = {}
        for s in self.steps:
            if s.inputs:
                counts[s.round] = counts.get(s.round, 0) + len(s.inputs)
        return counts

    def outgoing(self, step_id: str) -> list:
        return [e for s in self.steps for e in s.inputs if e.src == step_id]

    @property
    def agents(self) -> tuple:
        seen: dict = {}
        for s in self.steps:
            seen.setdefault(s.agent, None)
        return tuple(seen)
