"""Shared parameter checks for topologies: agent names, defaults, a step's emitted kind.

Topology functions raise SpecError with the field path; the loader adds the file name.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Optional

from .errors import SpecError
from .spec import GraphSpec


def check_agent(spec: GraphSpec, name: str, field: str) -> str:
    if name not in spec.agents:
        raise SpecError(f"unknown agent {name!r}", field=field, fix=f"use one of: {', '.join(spec.agents)}")
    return name


def agent_list(spec: GraphSpec, names: Optional[tuple], field: str, exclude: tuple = ()) -> list:
    """The named agents (checked, no duplicates), or every spec agent not in `exclude`."""
    if names is None:
        return [a for a in spec.agents if a not in exclude]
    seen: list = []
    for i, name in enumerate(names):
        check_agent(spec, name, f"{field}.{i}")
        if name in seen:
            raise SpecError(f"duplicate agent {name!r}", field=f"{field}.{i}", fix="list each agent once")
        if name in exclude:
            raise SpecError(f"agent {name!r} already answers and cannot also be listed here",
                            field=f"{field}.{i}", fix="give each role its own agent")
        seen.append(name)
    if not seen:
        raise SpecError("needs at least one agent", field=field, fix="list agent ids")
    return seen


def text_agent(spec: GraphSpec, name: Optional[str], field: str) -> str:
    """`name` if given, else the one agent whose output is text."""
    if name is not None:
        return check_agent(spec, name, field)
    texts = [a for a, cfg in spec.agents.items() if cfg.output == "text"]
    if len(texts) != 1:
        found = ", ".join(texts) if texts else "none"
        raise SpecError(f"cannot tell which agent answers (agents with output text: {found})", field=field,
                        fix=f"set {field} to an agent id")
    return texts[0]


def with_emits(steps: list, default: str) -> tuple:
    """Set each step's `emit` to the kind its first outgoing edge carries.

    validate_plan checks that all of a step's outgoing edges agree on that kind.
    """
    first: dict = {}
    for step in steps:
        for edge in step.inputs:
            first.setdefault(edge.src, edge.kind)
    return tuple(replace(s, emit=first.get(s.id, default)) for s in steps)
