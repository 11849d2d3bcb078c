"""object_store transport: tensors go into Ray's shared-memory object store once, and every
receiver on the node reads them in place.

Ray's own zero-copy path for torch tensors (RAY_ENABLE_ZERO_COPY_TORCH_TENSORS=1, read once
when `ray` is imported) does the work. It stores each tensor as a raw byte buffer, so it
covers every dtype (bfloat16 included) and tensors nested anywhere inside the message. A
receiver gets tensors that alias the sealed, shared store buffer; Ray exposes that buffer
read-only but torch cannot mark a tensor read-only, so receivers never write into them.

Messages of at most INLINE_BYTES of tensors travel as one bytes blob instead: Ray copies
results that small into the reply anyway, and one blob is the cheapest thing to pickle, so a
small message costs little more than an empty actor call.

In a process where that flag is off, Ray would pickle each tensor with a copy on put and
on get. There `pack` hands Ray flat uint8 numpy views instead (numpy arrays are always
zero-copy in Ray) and `unpack` turns them back into tensors of the original dtype.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..errors import TransportError
from ..message import LatentMessage, MessageHeader, dtype_from_name
from .base import Transport, check_message
from .memory_order import from_transit, to_transit


INLINE_BYTES = 64 << 10  # below Ray's limit for results it returns inline (100 KiB)
_ALIGN = 16  # each tensor starts at a multiple of every element size in the blob


def ray_zero_copy_enabled() -> bool:
    """Whether Ray in this process stores torch tensors without pickling copies."""
    from ray._private import ray_constants

    return bool(getattr(ray_constants, "RAY_ENABLE_ZERO_COPY_TORCH_TENSORS", False))


def storable(t: torch.Tensor) -> torch.Tensor:
    """The tensor as the store can take it: detached and on the CPU (`to_transit` then
    stores it contiguous as it lies in memory)."""
    if t.requires_grad:
        t = t.detach()
    return t if t.device.type == "cpu" else t.cpu()


class Unreadable(ValueError):
    """Bytes from the store that do not rebuild into the message their header describes."""

    def __init__(self, field: str, reason: str):
        self.field = field
        super().__init__(reason)


def _header(data: bytes) -> MessageHeader:
    try:
        head = MessageHeader.from_bytes(data)
    except (ValueError, TypeError) as exc:
        raise Unreadable("header", str(exc)) from None
    if not (isinstance(head.shapes, dict) and isinstance(head.dtypes, dict)):
        raise Unreadable("shapes", "the header's shapes and dtypes must be maps from tensor names")
    return head


def _layout(head: MessageHeader, name: str) -> tuple:
    """(dtype, shape, bytes) the header gives tensor `name`."""
    shape = head.shapes.get(name)
    if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                            for d in shape)):
        raise Unreadable(f"shapes.{name}", f"the header's shape of tensor {name!r} is {shape!r}, not a list "
                                           "of sizes >= 0")
    try:
        dtype = dtype_from_name(head.dtypes.get(name))
    except ValueError as exc:
        raise Unreadable(f"dtypes.{name}", f"tensor {name!r}: {exc}") from None
    return dtype, shape, dtype.itemsize * math.prod(shape)


@dataclass(frozen=True)
class ByteViewMessage:
    """A message whose tensors travel as flat uint8 numpy views of their own memory."""

    header: bytes
    buffers: dict  # name -> 1-D numpy uint8 array

    @classmethod
    def of(cls, msg: LatentMessage) -> "ByteViewMessage":
        return cls(msg.header.to_bytes(),
                   {k: t.reshape(-1).view(torch.uint8).numpy() for k, t in msg.tensors.items()})

    def to_message(self) -> LatentMessage:
        head = _header(self.header)
        tensors = {}
        with warnings.catch_warnings():
            # The store hands out read-only buffers; torch warns that it cannot honour that.
            warnings.simplefilter("ignore", UserWarning)
            for name, buf in self.buffers.items():
                dtype, shape, size = _layout(head, name)
                if buf.size != size:
                    raise Unreadable(name, f"tensor {name!r} arrived as {buf.size} bytes but the header's "
                                           f"{shape} {dtype} needs {size}")
                if buf.size == 0:  # nothing to share, and torch cannot reinterpret an empty view
                    tensors[name] = torch.empty(shape, dtype=dtype)
                    continue
                tensors[name] = torch.from_numpy(buf).view(dtype).reshape(shape)
        return LatentMessage(head, tensors)


class InlineMessage(NamedTuple):
    """A small message: its header and all its tensors' bytes, back to back, aligned."""

    header: bytes
    payload: bytes

    @classmethod
    def of(cls, msg: LatentMessage) -> "InlineMessage":
        chunks = []
        for name in msg.header.shapes:
            raw = msg.tensors[name].reshape(-1).view(torch.uint8).numpy().tobytes()
            chunks.append(raw + bytes(-len(raw) % _ALIGN))
        return cls(msg.header.to_bytes(), b"".join(chunks))

    def to_message(self) -> LatentMessage:
        head = _header(self.header)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # bytes are immutable; torch cannot say so
            blob = torch.frombuffer(self.payload, dtype=torch.uint8) if self.payload else None
        tensors, offset = {}, 0
        for name in head.shapes:
            dtype, shape, size = _layout(head, name)
            if size == 0:
                tensors[name] = torch.empty(shape, dtype=dtype)
                continue
            if offset + size > len(self.payload):
                raise Unreadable(name, f"tensor {name!r} ({shape} {dtype}) needs bytes {offset}..{offset + size} "
                                       f"but the payload has {len(self.payload)}")
            tensors[name] = blob[offset:offset + size].view(dtype).reshape(shape)
            offset += size + (-size % _ALIGN)
        if offset != len(self.payload):
            raise Unreadable("shapes", f"the header's tensors take {offset} bytes but the payload has "
                                       f"{len(self.payload)}")
        return LatentMessage(head, tensors)


class ObjectStoreTransport(Transport):
    name = "object_store"

    def pack(self, msg: LatentMessage) -> object:
        msg = to_transit(check_message(msg, self.name), storable)
        if msg.nbytes <= INLINE_BYTES:
            return InlineMessage.of(msg)
        return msg if ray_zero_copy_enabled() else ByteViewMessage.of(msg)

    def unpack(self, obj: object) -> LatentMessage:
        if isinstance(obj, (ByteViewMessage, InlineMessage)):
            try:
                obj = obj.to_message()
            except Unreadable as exc:
                raise TransportError(f"the message cannot be rebuilt from its bytes: {exc}", transport=self.name,
                                     field=exc.field) from None
        return check_message(from_transit(check_message(obj, self.name), self.name), self.name)
