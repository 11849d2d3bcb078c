"""hub: spokes talk only through a hub that aggregates their messages in one shared space.

Each round every spoke thinks and sends its message to the hub; the hub combines them
(action "aggregate": concat, mean or weighted, see channels/kinds/soft.py; no model call)
and sends the one result back to every spoke for the next round. After the last round
the hub agent reads the final aggregate and decodes the answer. The spokes' edge codec
decides the space the hub aggregates in: with one model, the model's own hidden space
(codec realign); with different models, a shared space (codec hub by default, or
relative): each spoke encodes into it, the hub combines there, and every receiver
decodes the aggregate into its own model with the same codec.

With text messages (run.method text) the hub agent itself reads the spokes' texts and
writes the text it sends back, the text-MAS counterpart of aggregation.

Parameters:
  hub:       agent id (default: the one agent with `output: text`)
  spokes:    agent ids (default: every other agent, spec order)
  rounds:    R >= 1
  aggregate: concat | mean | weighted
Messages per round: N to the hub (round 1), N back plus N to the hub (rounds 2..R),
1 into the final answer: O(N), against O(N^2) for a mesh.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from latentray.channels.kinds import TEXT, get_kind

from .edges import make_edge
from .plan import Plan, Step
from .roles import agent_list, text_agent, with_emits
from .spec import GraphSpec


class HubParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["hub"] = "hub"
    hub: Optional[str] = None
    spokes: Optional[tuple[str, ...]] = None
    rounds: int = Field(1, ge=1, le=64)
    aggregate: Literal["concat", "mean", "weighted"] = "mean"


def hub(spec: GraphSpec, params: HubParams) -> Plan:
    center = text_agent(spec, params.hub, "topology.hub")
    spokes = agent_list(spec, params.spokes, "topology.spokes", exclude=(center,))
    steps = []
    space_codec = None  # codec of the spokes' edges: the aggregate lives in its space
    for r in range(1, params.rounds + 1):
        back = f"r{r - 1}/{center}"
        for s in spokes:
            sid = f"r{r}/{s}"
            inputs = (_from_hub(spec, back, sid, center, s, space_codec),) if r > 1 else ()
            steps.append(Step(id=sid, agent=s, action="latent", inputs=inputs, round=r))
        hub_id = f"r{r}/{center}"
        inputs = tuple(make_edge(spec, f"r{r}/{s}", hub_id, s, center) for s in spokes)
        textual = all(get_kind(e.kind).role == TEXT for e in inputs)  # the hub agent reads and writes text
        space_codec = None if textual else inputs[0].codec
        steps.append(Step(id=hub_id, agent=center, action="latent" if textual else "aggregate", inputs=inputs,
                          round=r, aggregate="" if textual else params.aggregate))
    last = f"r{params.rounds}/{center}"
    final = Step(id=f"final/{center}", agent=center, action="text", round=params.rounds + 1,
                 inputs=(_from_hub(spec, last, f"final/{center}", center, center, space_codec),))
    steps = with_emits(steps + [final], spec.channels.kind)
    return Plan(topology="hub", steps=steps, answer_steps=(final.id,), rounds=params.rounds + 1)


def _from_hub(spec: GraphSpec, src_step: str, dst_step: str, center: str, dst: str, space_codec):
    """An edge out of the hub: an aggregate is decoded with the codec its spokes encoded with."""
    edge = make_edge(spec, src_step, dst_step, center, dst)
    return replace(edge, codec=space_codec) if space_codec and get_kind(edge.kind).takes_codec else edge
