"""What every transport does: turn a message into what an actor method returns, and back.

A producing actor method returns `transport.pack(msg)`; Ray stores or ships it. A receiving
actor method gets that object as an argument (Ray resolves the ObjectRef) and calls
`transport.unpack(arg)`. The tensors of an unpacked message may alias memory shared with
other readers, so receivers never write into them: `owned_copy` first if they must.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

from ..errors import TransportError
from ..message import LatentMessage, header_mismatch


class Transport(ABC):
    name = "?"

    @abstractmethod
    def pack(self, msg: LatentMessage) -> object:
        """What the producing actor method returns for `msg`."""

    @abstractmethod
    def unpack(self, obj: object) -> LatentMessage:
        """The message back from what the receiving method was given."""


def check_message(obj: object, transport: str) -> LatentMessage:
    if not isinstance(obj, LatentMessage):
        raise TransportError(
            f"expected a LatentMessage (what pack() returns), got {type(obj).__name__}; "
            "pass the producing method's ObjectRef straight to the receiving method",
            transport=transport)
    head = obj.header
    for field, value in (("tensors", obj.tensors), ("shapes", head.shapes), ("dtypes", head.dtypes)):
        if not isinstance(value, dict):
            raise TransportError(f"a message's {field} must map tensor names, got a {type(value).__name__} "
                                 f"(message from {head.sender!r})", transport=transport, field=field)
    if set(obj.tensors) != set(head.shapes):
        odd = sorted(set(obj.tensors) ^ set(head.shapes))[0]
        raise TransportError(
            f"tensors {sorted(obj.tensors)} do not match the header's {sorted(head.shapes)} "
            f"(message from {head.sender!r})", transport=transport, field=f"shapes.{odd}")
    mismatch = header_mismatch(obj)
    if mismatch:
        raise TransportError(f"{mismatch[1]} (message from {head.sender!r})", transport=transport, field=mismatch[0])
    return obj


def owned_copy(msg: LatentMessage) -> LatentMessage:
    """A copy whose tensors the caller owns and may modify in place."""
    return msg.replace(tensors={k: t.clone() for k, t in msg.tensors.items()})
