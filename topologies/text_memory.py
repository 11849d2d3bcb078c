"""`memory: accumulate` for text messages: each agent reads every earlier agent's text.

A kv working memory carries everything written before it, so a latent agent with
`accumulate` sees the whole collaboration so far. Text carries only what its sender
wrote; for text collaboration to be the equal baseline (LatentMAS's text multi-agent
system passes every earlier agent's output on), an agent whose inbox is text reads the
text of every step it depends on, directly or through others, in plan order.
"""
from __future__ import annotations

from dataclasses import replace

from latentray.channels.kinds import TEXT, get_kind

from .edges import make_edge
from .spec import GraphSpec


def _is_text(edge) -> bool:
    return get_kind(edge.kind).role == TEXT


def accumulate_texts(spec: GraphSpec, steps: list) -> list:
    """`steps` (dependency order) where each step whose inputs are all text also reads, as
    text, every earlier step it depends on that sends text."""
    position = {s.id: i for i, s in enumerate(steps)}
    agent = {s.id: s.agent for s in steps}
    sends_text = {e.src for s in steps for e in s.inputs if _is_text(e)}
    upstream: dict = {}
    out = []
    for step in steps:
        seen = {a for e in step.inputs for a in (*upstream.get(e.src, ()), e.src)}
        upstream[step.id] = tuple(sorted(seen, key=position.__getitem__))
        if step.inputs and all(_is_text(e) for e in step.inputs):
            direct = {e.src: e for e in step.inputs}
            inputs = tuple(direct.get(src) or make_edge(spec, src, step.id, agent[src], step.agent, kind="text",
                                                        codec="identity", compression=())
                           for src in upstream[step.id] if src in direct or src in sends_text)
            step = replace(step, inputs=inputs)
        out.append(step)
    return out
