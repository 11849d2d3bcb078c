"""Apply a codec half to a hidden message, keeping the envelope honest.

An encoded message stays kind `hidden`; its vectors change size and its header notes
the codec and the wire space (extra["codec"], extra["space"]). A raw hidden message's
space is its sender's weights. Decoding checks the space, maps the vectors, optionally
realigns them into the receiver's input space, and returns kind `embeds`.
"""
from __future__ import annotations

import torch

from channels.errors import MessageError
from channels.message import LatentMessage

from .base import Decoder, Encoder, raw_space


def message_space(msg: LatentMessage) -> str:
    return msg.header.extra.get("space") or raw_space(msg.header.fingerprint)


def _map_rows(vecs: torch.Tensor, fn) -> torch.Tensor:
    b, s, d = vecs.shape
    return fn(vecs.reshape(b * s, d)).reshape(b, s, -1)


def encode_message(msg: LatentMessage, encoder: Encoder, codec: str) -> LatentMessage:
    if msg.kind != "hidden":
        return msg
    vecs = msg.tensors["hidden"]
    out = _map_rows(vecs, encoder).to(vecs.dtype if vecs.is_floating_point() else torch.float32)
    return msg.replace(tensors={**msg.tensors, "hidden": out},
                       extra={**msg.header.extra, "codec": codec, "space": encoder.space})


def decode_message(msg: LatentMessage, decoder: Decoder, realign, *, receiver: str, out_dtype) -> LatentMessage:
    """hidden (wire space) -> embeds (receiver's input space). `realign` maps [N, D] hidden
    states of the receiver's model into its input space (the receiving agent's W_a)."""
    if msg.kind != "hidden":
        return msg
    try:
        decoder.check_space(message_space(msg), msg.sender)
    except ValueError as exc:
        raise MessageError(str(exc), sender=msg.sender, receiver=receiver, field="extra.space") from None
    vecs = _map_rows(msg.tensors["hidden"].float(), decoder)
    if decoder.realign_after:
        vecs = _map_rows(vecs, realign)
    if not bool(torch.isfinite(vecs).all()):
        raise MessageError("decoding produced NaN/Inf; the codec part is damaged or does not fit these models",
                           sender=msg.sender, receiver=receiver, field="hidden")
    tensors = {"embeds": vecs.to(out_dtype), "mask": msg.tensors["mask"]}
    header = {k: v for k, v in msg.header.extra.items() if k != "space"}
    return LatentMessage(msg.header, {}).replace(tensors=tensors, kind="embeds", extra=header)
