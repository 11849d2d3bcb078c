"""Checks run once, before any actor starts: references, edges, cycles, message kinds."""
from __future__ import annotations

from .errors import SpecError
from .plan import Plan
from .spec import GraphSpec


def validate_spec(spec: GraphSpec, file: str) -> None:
    for name, agent in spec.agents.items():
        if agent.model not in spec.models:
            raise SpecError(f"unknown model {agent.model!r}", file=file, field=f"agents.{name}.model",
                            fix=f"use one of: {', '.join(spec.models)}")
    for i, edge in enumerate(spec.channels.edges):
        for end in ("src", "dst"):
            if getattr(edge, end) not in spec.agents:
                raise SpecError(f"unknown agent {getattr(edge, end)!r}", file=file,
                                field=f"channels.edges.{i}.{end}", fix=f"use one of: {', '.join(spec.agents)}")
    groups: dict = {}
    for name, agent in spec.agents.items():
        if agent.actor is not None:
            first = groups.setdefault(agent.actor, (name, agent.model))
            if first[1] != agent.model:
                raise SpecError(f"actor group {agent.actor!r} mixes models {first[1]!r} and {agent.model!r}",
                                file=file, field=f"agents.{name}.actor",
                                fix="only agents of one model can share an actor")


def validate_plan(spec: GraphSpec, plan: Plan, file: str) -> None:
    seen: set = set()
    for step in plan.steps:
        if step.agent not in spec.agents:
            raise SpecError(f"unknown agent {step.agent!r}", file=file, field="topology",
                            fix=f"use one of: {', '.join(spec.agents)}")
        if step.id in seen:
            raise SpecError(f"duplicate step id {step.id!r}", file=file, field="topology")
        for edge in step.inputs:
            if edge.src not in seen:
                raise SpecError(f"step {step.id!r} reads {edge.src!r}, which does not run before it",
                                file=file, field="topology", fix="check the order of agents")
            src_agent = plan.step(edge.src).agent
            if edge.kind == "kv":
                src_model, dst_model = spec.agents[src_agent].model, spec.agents[step.agent].model
                if src_model != dst_model:
                    raise SpecError(
                        f"kv edge {src_agent} -> {step.agent} joins different models "
                        f"{src_model!r} and {dst_model!r}", file=file, field="channels.kind",
                        fix="kv messages need one model on both ends; use kind hidden with a codec")
        seen.add(step.id)
    if not plan.answer_steps:
        raise SpecError("the topology produces no answer", file=file, field="topology")
    for sid in plan.answer_steps:
        if plan.step(sid).action != "text":
            raise SpecError(f"answer step {sid!r} does not decode text", file=file,
                            field=f"agents.{plan.step(sid).agent}.output", fix="set output: text")
