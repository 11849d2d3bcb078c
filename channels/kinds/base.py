"""MessageKind: everything one kind of latent message means, in one small class.

A kind says which tensors its messages carry and along which axis each one runs over the
sequence, which of them hold the content (what compression acts on), how to check a
message of the kind on arrival, how to count its bytes, how a receiving agent reads it
(its `role`), and the plain properties a spec is validated against. Code asks the kind
(`channels.kinds.get_kind(msg.kind)`) instead of branching on its name, so a new kind is
one file plus one `register_kind` line.

Nothing here imports torch or Ray: topologies read these properties without loading
either. Methods receive tensors and call their methods; a kind that must build tensors
imports torch inside the method.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable

from latentray.channels.errors import MessageError

# How a receiving agent reads a kind (agents/inbox.py):
MEMORY = "memory"  # a working-memory prefix (past keys and values)
SOFT_TOKENS = "soft_tokens"  # vectors placed as soft tokens before the prompt
TEXT = "text"  # text joined into the prompt


@dataclass(frozen=True)
class Arrival:
    """What a kind's own validation checks a message against.

    fail(field, text, error=MessageError) raises, naming sender, receiver and field.
    steps: the compression steps the message records (already checked by name).
    soft_dim: the vector size the edge reads: an int, None (any) or "receiver" (the
    receiver's hidden size)."""
    receiver: str
    fingerprint: dict | None
    fail: Callable
    model_dtype: object = None
    soft_dim: object = "receiver"
    steps: tuple = ()


class MessageKind:
    """The contract. Subclasses set the class attributes and override what differs."""

    name: str = ""
    tensors: tuple = ()  # names of the tensors every message of the kind carries
    seq_axis = MappingProxyType({})  # tensor name -> its sequence axis (where slots run)
    payload: tuple = ()  # tensors that carry the content; compression acts on these
    index_tensors: tuple = ()  # integer/bool bookkeeping tensors (masks, positions)
    role: str | None = None  # MEMORY, SOFT_TOKENS, TEXT, or None: no agent reads it

    # What spec validation and planning ask:
    same_model_only: bool = False  # only between agents of one model
    same_model_why: str = ""  # appended to the error naming the two models
    same_model_fix: str = ""  # the fix that error suggests
    takes_codec: bool = False  # vectors in the sender's last-layer space: an edge codec maps them
    aggregatable: bool = False  # a hub can combine several messages of the kind into one
    layered: bool = False  # tensors stacked per model layer along dim 0 (header.layers)
    rope_joined: bool = False  # several from different senders are joined by re-rotating keys
    needs_latent_steps: bool = False  # made of the sender's latent steps

    def validate(self, msg, arrival: Arrival) -> None:
        """Kind-specific checks, after the envelope, dtypes and finiteness were checked
        for every kind (channels/validate.py). Raise through arrival.fail."""

    def nbytes(self, msg) -> int:
        """Payload bytes of a message: every tensor it carries."""
        return sum(t.numel() * t.element_size() for t in msg.tensors.values())

    def aggregate(self, messages: list, mode: str, sender: str) -> tuple:
        """(tensors, header fields) of one message combining `messages` (all of this kind),
        which channels/aggregate.py builds; only aggregatable kinds."""
        raise MessageError(f"{self.name} messages cannot be aggregated", receiver=sender, field="kind")

    def __repr__(self) -> str:
        return f"<message kind {self.name!r}>"


def check_mask_rows(msg, fail) -> None:
    """A [B, T] mask of 0/1 whose row sums are the header's seq_lens, and whose trailing
    header.latent_slots slots are real in every row."""
    h, mask = msg.header, msg.tensors["mask"]
    if mask.ndim != 2:
        fail("mask", f"must be [B, T], got {list(mask.shape)}")
    if not bool(((mask == 0) | (mask == 1)).all()):
        fail("mask", "values must be 0 (pad) or 1 (real)")
    sums = [int(n) for n in mask.long().sum(-1)]
    if list(h.seq_lens) != sums:
        fail("seq_lens", f"header says {list(h.seq_lens)}, mask has {sums} real slots per row")
    m = h.latent_slots
    if m < 0 or m > mask.shape[1] or (m and not bool(mask[:, mask.shape[1] - m:].bool().all())):
        fail("latent_slots", f"{m} trailing latent slots must be real in every row (mask width {mask.shape[1]})")
