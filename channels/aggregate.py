"""Hub aggregation: combine the spokes' messages into one, without a model call.

The modes (concat, mean, weighted) are the aggregatable kinds' own (channels/kinds/soft.py
for hidden and embeds); here only what holds for every kind: a known mode, something to
combine, and one aggregatable kind across the inputs.
"""
from __future__ import annotations

from .errors import MessageError
from .kinds import find_kind, kinds_with
from .kinds.soft import agreement_weights  # noqa: F401  (re-exported: the weighting, for tests and tools)
from .message import LatentMessage

MODES = ("concat", "mean", "weighted")


def aggregate_messages(messages: list, mode: str, sender: str, fingerprint: dict):
    """One message of the inputs' kind, sent by `sender` (the hub) under `fingerprint`."""
    if mode not in MODES:
        raise MessageError(f"unknown aggregate mode {mode!r}; use one of {', '.join(MODES)}",
                           receiver=sender, field="aggregate")
    if not messages:
        raise MessageError("nothing to aggregate", receiver=sender, field="inputs")
    kind = find_kind(messages[0].kind)
    for m in messages:
        if find_kind(m.kind) is not kind or not (kind and kind.aggregatable):
            raise MessageError(f"aggregation needs {' or '.join(kinds_with('aggregatable'))} messages of one kind, "
                               f"got {m.kind}", sender=m.sender, receiver=sender, field="kind")
    tensors, fields = kind.aggregate(messages, mode, sender)
    return LatentMessage.build(kind.name, sender=sender, fingerprint=fingerprint, tensors=tensors, **fields)
