"""What a receiving actor does with each inbox message before the agent sees it:
unpack it from its transport, validate it against the receiver, undo compression."""
from __future__ import annotations


def receive_messages(call, inbox: tuple, *, receiver_fingerprint: dict, model_dtype) -> list:
    from channels.compression import decompress_message
    from channels.validate import validate_message

    out = []
    for edge, msg in zip(call.inputs, inbox):
        validate_message(msg, receiver=call.agent, receiver_fingerprint=receiver_fingerprint,
                         edge_kind=edge.kind, model_dtype=model_dtype)
        out.append(decompress_message(msg, model_dtype))
    return out
