"""hierarchical: experts think concurrently and independently; a summarizer reads them all.

Unlike LatentMAS's hierarchical mode (experts one after another on one growing cache),
no expert sees another's work: each expert step reads nothing, so the engine runs them
at the same time. The summarizer's inbox holds one message per expert, in `experts`
order (several kv messages are joined by re-rotating keys, see agents/kv_join.py).

Parameters:
  experts:    agent ids (default: every agent except the summarizer, in spec order)
  summarizer: agent id (default: the one agent with `output: text`)
Rounds: 1 = experts (0 messages in), 2 = summarizer (one message per expert).
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict

from .edges import make_edge
from .plan import Plan, Step
from .roles import agent_list, text_agent, with_emits
from .spec import GraphSpec


class HierarchicalParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["hierarchical"] = "hierarchical"
    experts: Optional[tuple[str, ...]] = None
    summarizer: Optional[str] = None


def hierarchical(spec: GraphSpec, params: HierarchicalParams) -> Plan:
    summarizer = text_agent(spec, params.summarizer, "topology.summarizer")
    experts = agent_list(spec, params.experts, "topology.experts", exclude=(summarizer,))
    edges = [make_edge(spec, e, summarizer, e, summarizer) for e in experts]
    steps = [Step(id=e, agent=e, action="latent", round=1) for e in experts]
    steps.append(Step(id=summarizer, agent=summarizer, action="text", inputs=tuple(edges), round=2))
    return Plan(topology="hierarchical", steps=with_emits(steps, spec.channels.kind),
                answer_steps=(summarizer,), rounds=2)
