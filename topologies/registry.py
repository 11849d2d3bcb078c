"""Topology registry: a spec's `topology.type` names a built-in or a user's `module:Class`.

A topology is (params model, function(spec, params) -> Plan). A user class given as
`module:Class` must have a `Params` pydantic model and a `plan(spec, params)` method.
"""
from __future__ import annotations

import importlib

from .chain import ChainParams, chain
from .graph import GraphParams, graph
from .hierarchical import HierarchicalParams, hierarchical
from .hub import HubParams, hub
from .mesh import MeshParams, mesh

TOPOLOGIES = {
    "chain": (ChainParams, chain),
    "hierarchical": (HierarchicalParams, hierarchical),
    "mesh": (MeshParams, mesh),
    "hub": (HubParams, hub),
    "graph": (GraphParams, graph),
}


def resolve_topology(type_name: str):
    """Return (params model, plan function); raise KeyError with the known names."""
    if type_name in TOPOLOGIES:
        return TOPOLOGIES[type_name]
    if ":" in type_name:
        module_name, _, class_name = type_name.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as exc:
            raise KeyError(f"cannot import topology {type_name!r}: {exc}") from exc
        if not hasattr(cls, "Params") or not callable(getattr(cls, "plan", None)):
            raise KeyError(f"topology {type_name!r} needs a Params pydantic model and a plan(spec, params) method")
        return cls.Params, cls().plan
    raise KeyError(
        f"unknown topology {type_name!r}; use one of {', '.join(sorted(TOPOLOGIES))} or module:Class"
    )
