"""bf16 / fp16: every float tensor travels in a 16-bit type; the receiver casts back.

Exactly halves the float bytes of an fp32 message. fp16 has a small range (max 65504),
so a value that would overflow is an error at the sender rather than an inf at the receiver.
"""
from __future__ import annotations

import torch

from latentray.channels.errors import CompressionError
from latentray.channels.message import LatentMessage

from .base import Compression


class Cast(Compression):
    stage = 2

    def __init__(self, name: str, dtype: torch.dtype):
        self.name, self.dtype = name, dtype

    def compress(self, msg: LatentMessage, receiver: str = "?") -> LatentMessage:
        self.begin(msg, receiver)
        out = {}
        for key, t in msg.tensors.items():
            if not t.is_floating_point():
                out[key] = t
                continue
            cast = t.to(self.dtype)
            if not bool(torch.isfinite(cast).all()) and bool(torch.isfinite(t).all()):
                raise CompressionError(
                    f"{key} has values beyond the range of {self.name} (max |x| = "
                    f"{float(t.abs().max()):.3g}); use bf16 on this channel", sender=msg.sender,
                    receiver=receiver, field=f"compression.{self.name}")
            out[key] = cast
        source = msg.tensors[self.payload(msg)[0]].dtype
        extra = {"source_dtype": msg.header.extra.get("source_dtype", str(source).removeprefix("torch."))}
        return self.finish(msg, out, extra=extra)

    def decompress(self, msg: LatentMessage, dtype: torch.dtype) -> LatentMessage:
        out = {k: t.to(dtype) if t.is_floating_point() else t for k, t in msg.tensors.items()}
        return self.undo(msg, out)
