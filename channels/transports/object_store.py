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

import warnings
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..message import LatentMessage, MessageHeader, dtype_from_name
from .base import Transport, check_message


INLINE_BYTES = 64 << 10  # below Ray's limit for results it returns inline (100 KiB)
_ALIGN = 16  # each tensor starts at a multiple of every element size in the blob


def ray_zero_copy_enabled() -> bool:
    """Whether Ray in this process stores torch tensors without pickling copies."""
    from ray._private import ray_constants

    return bool(getattr(ray_constants, "RAY_ENABLE_ZERO_COPY_TORCH_TENSORS", False))


def storable(t: torch.Tensor) -> torch.Tensor:
    """The tensor as the store can take it without a hidden copy: detached, CPU, contiguous."""
    if t.requires_grad:
        t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    return t if t.is_contiguous() else t.contiguous()


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
        head = MessageHeader.from_bytes(self.header)
        tensors = {}
        with warnings.catch_warnings():
            # The store hands out read-only buffers; torch warns that it cannot honour that.
            warnings.simplefilter("ignore", UserWarning)
            for name, buf in self.buffers.items():
                dtype, shape = dtype_from_name(head.dtypes[name]), head.shapes[name]
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
        head = MessageHeader.from_bytes(self.header)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # bytes are immutable; torch cannot say so
            blob = torch.frombuffer(self.payload, dtype=torch.uint8) if self.payload else None
        tensors, offset = {}, 0
        for name, shape in head.shapes.items():
            dtype = dtype_from_name(head.dtypes[name])
            size = dtype.itemsize * torch.Size(shape).numel()
            if size == 0:
                tensors[name] = torch.empty(shape, dtype=dtype)
                continue
            tensors[name] = blob[offset:offset + size].view(dtype).reshape(shape)
            offset += size + (-size % _ALIGN)
        return LatentMessage(head, tensors)


class ObjectStoreTransport(Transport):
    name = "object_store"

    def pack(self, msg: LatentMessage) -> object:
        msg = check_message(msg, self.name)
        tensors = {k: storable(t) for k, t in msg.tensors.items()}
        if any(tensors[k] is not t for k, t in msg.tensors.items()):
            msg = msg.replace(tensors=tensors)
        if msg.nbytes <= INLINE_BYTES:
            return InlineMessage.of(msg)
        return msg if ray_zero_copy_enabled() else ByteViewMessage.of(msg)

    def unpack(self, obj: object) -> LatentMessage:
        if isinstance(obj, (ByteViewMessage, InlineMessage)):
            obj = obj.to_message()
        return check_message(obj, self.name)
