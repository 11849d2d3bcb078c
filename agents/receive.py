"""What a receiving actor does with each inbox message before the agent sees it:
unpack it from its transport, validate it against the receiver, undo compression."""
from __future__ import annotations

from channels.compression import decompress_message
from channels.transports import get_transport
from channels.validate import validate_message


def receive_messages(call, inbox: tuple, *, receiver_fingerprint: dict, model_dtype) -> list:
    out = []
    for edge, obj in zip(call.inputs, inbox):
        options = {"backend": edge.backend} if edge.transport == "rdt" else {}
        msg = get_transport(edge.transport, **options).unpack(obj)
        validate_message(msg, receiver=call.agent, receiver_fingerprint=receiver_fingerprint,
                         edge_kind=edge.kind, model_dtype=model_dtype)
        wire = msg.nbytes
        msg = decompress_message(msg, model_dtype)
        out.append(msg.replace(extra={**msg.header.extra, "wire_bytes": wire}))
    return out
