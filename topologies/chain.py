"""chain: the LatentMAS sequential pattern (planner -> critic -> refiner -> judger).

Parameters:
  order:  agent ids in chain order (default: the agents in spec order)
  memory: "accumulate": each agent reads the whole working memory built so far (LatentMAS);
          "previous": only the slots the previous agent added.
  transfer (accumulate over uncompressed kv on the object store): "delta" (default): each agent sends
          only the slots it added, once, and every later agent reads all earlier parts by
          reference and assembles the memory itself, so a chain of N writes N parts
          instead of N growing memories (O(N) bytes, not O(N^2)); "full": each agent
          re-sends the whole memory to the next (the same result, more bytes).
          Text messages with accumulate: each agent reads every earlier agent's text, in
          order (text_memory.py), as a kv memory holds everything written before it.
The last agent decodes the answer; every other agent thinks and sends a message.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict

from latentray.channels.kinds import MEMORY, get_kind

from .edges import make_edge
from .plan import Plan, Step
from .roles import with_emits
from .spec import GraphSpec
from .text_memory import accumulate_texts


class ChainParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["chain"] = "chain"
    order: Optional[tuple[str, ...]] = None
    memory: Literal["accumulate", "previous"] = "accumulate"
    transfer: Literal["delta", "full"] = "delta"


def _delta(edge, params: ChainParams) -> bool:
    """A working memory (kv) can travel as the parts each agent added. Delta parts give
    exactly the full memory's result only without compression (int8 scales and
    latent_only's slot choice would apply per part instead of per memory)."""
    return (params.memory == "accumulate" and params.transfer == "delta" and get_kind(edge.kind).role == MEMORY
            and edge.transport == "object_store" and not edge.compression)


def chain(spec: GraphSpec, params: ChainParams) -> Plan:
    order = list(params.order or spec.agents)
    edges = [make_edge(spec, a, b, a, b) for a, b in zip(order, order[1:])]
    steps = []
    for i, name in enumerate(order):
        hop = edges[i - 1] if i else None
        if hop is not None and _delta(hop, params):
            # every earlier agent's own part, with this hop's settings (kind, compression)
            inputs = tuple(replace(hop, src=src, settings_from=order[i - 1] if src != order[i - 1] else "")
                           for src in order[:i])
            merge = "concat"
        else:
            inputs, merge = ((hop,) if hop else ()), "join"
        out = edges[i] if i < len(edges) else None
        own = params.memory == "previous" or (out is not None and _delta(out, params))
        steps.append(Step(id=name, agent=name, action="text" if i == len(order) - 1 else "latent",
                          inputs=inputs, kv_scope="own" if own else "all", kv_merge=merge))
    if params.memory == "accumulate":
        steps = accumulate_texts(spec, steps)
    return Plan(topology="chain", steps=with_emits(steps, spec.channels.kind), answer_steps=(order[-1],))
