"""Resolve the channel settings of one edge: spec defaults, then any per-edge override."""
from __future__ import annotations

from latentray.channels.kinds import get_kind

from .plan import Edge
from .spec import GraphSpec


def same_model(spec: GraphSpec, a: str, b: str) -> bool:
    """Two agents whose models are the same weights (same ref and dtype)."""
    ma, mb = spec.models[spec.agents[a].model], spec.models[spec.agents[b].model]
    return (ma.ref, ma.dtype, ma.seed) == (mb.ref, mb.dtype, mb.seed)


def auto_codec(spec: GraphSpec, kind: str, src_agent: str, dst_agent: str) -> str:
    """A kind codecs map (hidden): realign within one model, the hub space between different
    ones; any other kind: identity."""
    if not get_kind(kind).takes_codec:
        return "identity"
    if src_agent not in spec.agents or dst_agent not in spec.agents:
        return "realign"  # an unknown agent is reported by validation
    return "realign" if same_model(spec, src_agent, dst_agent) else "hub"


def make_edge(spec: GraphSpec, src_step: str, dst_step: str, src_agent: str, dst_agent: str, *,
              kind=None, transport=None, codec=None, compression=None) -> Edge:
    """The edge's settings: spec defaults, then channels.edges overrides, then the keyword
    overrides (a graph topology's own edge fields); codec auto is resolved last."""
    ch = spec.channels
    e_kind, e_transport, e_codec, e_compression = ch.kind, ch.transport, ch.codec, tuple(ch.compression)
    for override in ch.edges:
        if override.src == src_agent and override.dst == dst_agent:
            e_kind = override.kind or e_kind
            e_transport = override.transport or e_transport
            e_codec = override.codec or e_codec
            e_compression = e_compression if override.compression is None else tuple(override.compression)
    e_kind, e_transport, e_codec = kind or e_kind, transport or e_transport, codec or e_codec
    e_compression = e_compression if compression is None else tuple(compression)
    if spec.run.method == "text":
        e_kind, e_codec, e_compression = "text", "identity", ()
    if e_codec == "auto":
        e_codec = auto_codec(spec, e_kind, src_agent, dst_agent)
    return Edge(src=src_step, dst=dst_step, kind=e_kind, transport=e_transport, codec=e_codec,
                compression=e_compression)
