"""Per-channel compression of latent messages: a registry of steps and the two entry points.

Names (as a channel spec writes them): "bf16", "fp16", "latent_only", "int8",
"layers:<i,j,...>". The sender applies them in list order (`compress_message`); the
receiver undoes them in reverse (`decompress_message`): int8 is dequantised, casts go
back to the model dtype, dropped layers are refilled (see layers.py), latent_only needs
nothing. Lists must follow stage order: latent_only, layers, bf16|fp16, int8.
"""
from __future__ import annotations

import torch

from latentray.channels.errors import CompressionError, MessageError
from latentray.channels.message import LatentMessage

from .base import RECORD, Compression, record
from .cast import Cast
from .int8 import Int8
from .latent_only import LatentOnly
from .layers import LayerSelection, parse_layers

REGISTRY = {
    "bf16": Cast("bf16", torch.bfloat16),
    "fp16": Cast("fp16", torch.float16),
    "latent_only": LatentOnly(),
    "int8": Int8(),
}


def get_compression(name: str) -> Compression:
    if name.startswith("layers:"):
        return LayerSelection(parse_layers(name))
    if name not in REGISTRY:
        raise ValueError(f"unknown compression {name!r}; use {', '.join(REGISTRY)} or layers:<i,j,...>")
    return REGISTRY[name]


def check_compression_names(names) -> list:
    """The steps for a list of names; ValueError on an unknown name, a repeat or a bad order
    (usable when a spec is validated, before any message exists)."""
    steps = [get_compression(n) for n in names]
    for a, b in zip(steps, steps[1:]):
        if b.stage <= a.stage:
            raise ValueError(f"compression {b.name!r} cannot follow {a.name!r}; order the list as "
                             "latent_only, layers:<...>, bf16|fp16, int8 (each at most once)")
    return steps


def compress_message(msg: LatentMessage, names, *, receiver: str = "?") -> LatentMessage:
    """Apply compressions in list order; records them and the uncompressed byte count."""
    names = list(names)
    if not names:
        return msg
    try:
        check_compression_names(record(msg) + names)  # after what the message already went through
        steps = [get_compression(n) for n in names]
    except ValueError as e:
        raise CompressionError(str(e), sender=msg.sender, receiver=receiver, field=RECORD) from None
    before = msg.nbytes
    for step in steps:
        msg = step.compress(msg, receiver=receiver)
    return msg.replace(extra={**msg.header.extra, "uncompressed_bytes": before})


def decompress_message(msg: LatentMessage, model_dtype: torch.dtype, *, receiver: str = "?") -> LatentMessage:
    """Undo every recorded compression (last first). The result has the kind's plain tensors,
    all layers, and float payload in `model_dtype` wherever a step changed the dtype."""
    done = record(msg)
    if not done:
        return msg
    for name in reversed(done):
        try:
            step = get_compression(name)
        except ValueError as e:
            raise MessageError(str(e), sender=msg.sender, receiver=receiver, field=RECORD) from None
        msg = step.decompress(msg, model_dtype)
    extra = {k: v for k, v in msg.header.extra.items() if k != RECORD}
    return msg.replace(extra={**extra, "decompressed": done})


__all__ = ["REGISTRY", "Compression", "check_compression_names", "compress_message",
           "decompress_message", "get_compression", "parse_layers"]
