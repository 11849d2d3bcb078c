"""chain: the LatentMAS sequential pattern (planner -> critic -> refiner -> judger).

Parameters:
  order:  agent ids in chain order (default: the agents in spec order)
  memory: "accumulate" passes the whole working memory built so far (LatentMAS);
          "previous" passes only the slots the previous agent added.
The last agent decodes the answer; every other agent thinks and sends a message.
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict

from .edges import make_edge
from .plan import Plan, Step
from .roles import with_emits
from .spec import GraphSpec


class ChainParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["chain"] = "chain"
    order: Optional[tuple[str, ...]] = None
    memory: Literal["accumulate", "previous"] = "accumulate"


def chain(spec: GraphSpec, params: ChainParams) -> Plan:
    order = list(params.order or spec.agents)
    edges = [make_edge(spec, a, b, a, b) for a, b in zip(order, order[1:])]
    scope = "all" if params.memory == "accumulate" else "own"
    steps = [Step(id=name, agent=name, action="text" if i == len(order) - 1 else "latent",
                  inputs=(edges[i - 1],) if i else (), kv_scope=scope)
             for i, name in enumerate(order)]
    return Plan(topology="chain", steps=with_emits(steps, spec.channels.kind), answer_steps=(order[-1],))
