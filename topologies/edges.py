"""Resolve the channel settings of one edge: spec defaults, then any per-edge override."""
from __future__ import annotations

from .plan import Edge
from .spec import GraphSpec


def make_edge(spec: GraphSpec, src_step: str, dst_step: str, src_agent: str, dst_agent: str) -> Edge:
    ch = spec.channels
    kind, transport, codec, compression = ch.kind, ch.transport, ch.codec, tuple(ch.compression)
    for override in ch.edges:
        if override.src == src_agent and override.dst == dst_agent:
            kind = override.kind or kind
            transport = override.transport or transport
            codec = override.codec or codec
            compression = compression if override.compression is None else tuple(override.compression)
    if spec.run.method == "text":
        kind, codec, compression = "text", "identity", ()
    return Edge(src=src_step, dst=dst_step, kind=kind, transport=transport, codec=codec, compression=compression)
