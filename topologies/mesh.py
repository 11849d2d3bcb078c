"""mesh: R rounds in which every agent hears every other agent's thoughts of the round before.

Round 1: each agent thinks alone. Round r > 1: agent a reads the round r-1 message of
every other agent (its own too with include_self), in `agents` order. Then either a
judger reads every agent's last-round message and answers, or (judger: majority) each
agent reads the others' last-round messages, decodes an answer, and the engine takes a
majority vote (ties go to the earliest agent in `agents` order).

kv messages carry only the slots the sender added in that round (scope "own"); the
received prefix is not passed on again, so nothing is duplicated round after round.

Parameters:
  agents:       agent ids that talk (default: every agent except the judger, spec order)
  rounds:       R >= 1 rounds of latent exchange
  judger:       agent id, or "majority" (default: the one agent with `output: text`)
  include_self: also read one's own previous-round message (N^2 instead of N(N-1))
Messages per round: 0, then N(N-1) for rounds 2..R, then N (judger) or N(N-1) (vote).
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from .edges import make_edge
from .plan import Plan, Step
from .roles import agent_list, text_agent, with_emits
from .spec import GraphSpec


class MeshParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["mesh"] = "mesh"
    agents: Optional[tuple[str, ...]] = None
    rounds: int = Field(2, ge=1, le=64)
    judger: Optional[str] = None
    include_self: bool = False


def mesh(spec: GraphSpec, params: MeshParams) -> Plan:
    vote = params.judger == "majority"
    judger = None if vote else text_agent(spec, params.judger, "topology.judger")
    talkers = agent_list(spec, params.agents, "topology.agents", exclude=(judger,) if judger else ())
    rounds = params.rounds

    def reads(r: int, dst: str, dst_step: str) -> tuple:
        return tuple(make_edge(spec, f"r{r}/{src}", dst_step, src, dst) for src in talkers
                     if src != dst or params.include_self)

    steps = []
    for r in range(1, rounds + 1):
        for a in talkers:
            sid = f"r{r}/{a}"
            steps.append(Step(id=sid, agent=a, action="latent", round=r, kv_scope="own",
                              inputs=reads(r - 1, a, sid) if r > 1 else ()))
    if vote:
        finals = [Step(id=f"vote/{a}", agent=a, action="text", round=rounds + 1,
                       inputs=reads(rounds, a, f"vote/{a}")) for a in talkers]
        return Plan(topology="mesh", steps=with_emits(steps + finals, spec.channels.kind),
                    answer_steps=tuple(s.id for s in finals),
                    answer_mode="majority", rounds=rounds + 1)
    final = Step(id=f"final/{judger}", agent=judger, action="text", round=rounds + 1,
                 inputs=tuple(make_edge(spec, f"r{rounds}/{a}", f"final/{judger}", a, judger) for a in talkers))
    return Plan(topology="mesh", steps=with_emits(steps + [final], spec.channels.kind),
                answer_steps=(final.id,), rounds=rounds + 1)
