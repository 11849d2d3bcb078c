"""What every compression shares: the record kept in the header and the order rules.

A compressed message carries `header.extra["compression"]`, the list of steps applied
(in order), so a receiver can undo them in reverse. Steps must come in stage order:
structural selections (latent_only, then layers) before numeric ones (bf16/fp16, then
int8), because a selection after quantisation would have to slice scales and sinks too,
and a cast after int8 has nothing float left to cast.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from latentray.channels.errors import CompressionError, MessageError
from latentray.channels.kinds import KINDS, MessageKind, find_kind
from latentray.channels.message import LatentMessage

RECORD = "compression"


def record(msg: LatentMessage) -> list:
    return list(msg.header.extra.get(RECORD, []))


def compact(t: torch.Tensor) -> torch.Tensor:
    """A tensor that owns exactly its bytes: a view of a bigger storage would be shipped
    whole when the message is serialised, undoing the saving."""
    if t.untyped_storage().nbytes() > t.numel() * t.element_size() or not t.is_contiguous():
        return t.clone(memory_format=torch.contiguous_format)
    return t


class Compression(ABC):
    """One compression step. Subclasses set name and stage and implement compress and
    decompress; a step that adds tensors also names them (added_tensors) and checks them.
    A step acts on a kind's payload tensors (channels/kinds/); `applies_to` says which
    kinds it can act on at all."""

    name: str = ""
    stage: int = 0

    def applies_to(self, kind: MessageKind) -> bool:
        """Whether this step can compress messages of `kind` (default: any kind with a payload)."""
        return bool(kind.payload)

    @abstractmethod
    def compress(self, msg: LatentMessage, receiver: str = "?") -> LatentMessage:
        """The message as sent: smaller tensors, the step recorded in the header."""

    @abstractmethod
    def decompress(self, msg: LatentMessage, dtype: torch.dtype) -> LatentMessage:
        """The message as the receiver uses it, payload floats in `dtype`."""

    def added_tensors(self, msg: LatentMessage) -> tuple:
        """Names of the tensors this step added to `msg` (checked by validation)."""
        return ()

    def check(self, msg: LatentMessage, fail) -> None:
        """Validate what this step added; `fail(field, text)` raises a MessageError."""

    # ---- helpers for subclasses ------------------------------------------------------
    def begin(self, msg: LatentMessage, receiver: str) -> list:
        """Refuse a kind this step does not apply to; the steps already applied."""
        fail = lambda text: CompressionError(text, sender=msg.sender, receiver=receiver,  # noqa: E731
                                             field=f"{RECORD}.{self.name}")
        kind = find_kind(msg.kind)
        if kind is None or not self.applies_to(kind):
            fits = [name for name in KINDS if self.applies_to(find_kind(name))]
            raise fail(f"{self.name!r} does not apply to a {msg.kind!r} message (only {', '.join(fits)}); "
                       "remove it from this channel's compression list")
        return record(msg)  # the order against earlier steps is the registry's check (compress_message)

    @staticmethod
    def payload(msg: LatentMessage) -> tuple:
        """Names of the tensors that carry `msg`'s content (its kind's payload)."""
        return find_kind(msg.kind).payload

    def finish(self, msg: LatentMessage, tensors: dict, **header) -> LatentMessage:
        extra = {**msg.header.extra, **header.pop("extra", {}), RECORD: record(msg) + [self.name]}
        return msg.replace({k: compact(t) for k, t in tensors.items()}, extra=extra, **header)

    def undo(self, msg: LatentMessage, tensors: dict, drop_extra: tuple = (), **header) -> LatentMessage:
        done = record(msg)
        if not done or done[-1] != self.name:
            raise MessageError(f"cannot undo {self.name!r}: the message's last compression is "
                               f"{done[-1] if done else 'none'!r}", sender=msg.sender, field=RECORD)
        extra = {k: v for k, v in msg.header.extra.items() if k not in drop_extra}
        extra[RECORD] = done[:-1]
        return msg.replace(tensors, extra=extra, **header)
