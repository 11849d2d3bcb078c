"""Apply a codec half to a hidden message, keeping the envelope honest.

An encoded message stays kind `hidden`; its vectors change size and its header notes
the codec and the wire space (extra["codec"], extra["space"]). A raw hidden message's
space is its sender's weights. Decoding checks the space, maps the vectors, optionally
realigns them into the receiver's input space, and returns kind `embeds`. A decoder that
reads a whole message at once (`decode_set`: a trained resampler) may return another
number of vectors than arrived, with their own mask.
"""
from __future__ import annotations

import torch

from latentray.channels.errors import MessageError
from latentray.channels.kinds import get_kind
from latentray.channels.message import LatentMessage

from .base import Decoder, Encoder, raw_space


def message_space(msg: LatentMessage) -> str:
    return msg.header.extra.get("space") or raw_space(msg.header.fingerprint)


def sent_layer(msg: LatentMessage):
    """Whose states a hidden message holds: "last" or the decoder layer it was sent from."""
    return msg.header.extra.get("hidden_layer", "last")


def _map_rows(vecs: torch.Tensor, fn) -> torch.Tensor:
    b, s, d = vecs.shape
    return fn(vecs.reshape(b * s, d)).reshape(b, s, -1)


def encode_message(msg: LatentMessage, encoder: Encoder, codec: str) -> LatentMessage:
    """A message of a kind codecs map (hidden), in the encoder's wire space; any other as is."""
    if not get_kind(msg.kind).takes_codec:
        return msg
    sent = sent_layer(msg)
    if sent != encoder.layer:
        raise MessageError(f"the message carries layer {sent} states, but codec {codec}'s encoder part was trained on "
                           f"layer {encoder.layer} states; set channels.hidden_layer: {encoder.layer}, or train the "
                           "codec on this layer", sender=msg.sender, field="extra.hidden_layer")
    vecs = msg.tensors["hidden"]
    out = _map_rows(vecs, encoder).to(vecs.dtype if vecs.is_floating_point() else torch.float32)
    return msg.replace(tensors={**msg.tensors, "hidden": out},
                       extra={**msg.header.extra, "codec": codec, "space": encoder.space})


def decode_message(msg: LatentMessage, decoder: Decoder, realign, *, receiver: str, out_dtype,
                   latent_decode: str = "read") -> LatentMessage:
    """hidden (wire space) -> embeds (receiver's input space). Where the decoder has a
    `read` map (fitted codecs), prompt states take it; so do the trailing
    header.latent_slots latent-step states unless latent_decode is "think": then they are
    decoded into the receiver's last-layer space and realigned by `realign` (the receiving
    agent's W_a, [N, D] -> [N, D]), as are all states of a decoder without a read map.
    A message of a kind codecs do not map is returned as is."""
    if not get_kind(msg.kind).takes_codec:
        return msg
    if "space" not in msg.header.extra and sent_layer(msg) != "last":
        raise MessageError(f"a raw hidden message of layer {sent_layer(msg)} states: only an encoder part trained on "
                           "that layer (codec resampler) reads them", sender=msg.sender, receiver=receiver,
                           field="extra.hidden_layer")
    try:
        decoder.check_space(message_space(msg), msg.sender)
    except ValueError as exc:
        raise MessageError(str(exc), sender=msg.sender, receiver=receiver, field="extra.space") from None
    wire = msg.tensors["hidden"].float()
    if decoder.decode_set is not None:  # reads the whole message at once (a trained resampler)
        vecs, mask = decoder.decode_set(wire, msg.tensors["mask"])
        return _decoded(msg, vecs, mask, receiver, out_dtype, latent_slots=0,
                        seq_lens=tuple(int(n) for n in mask.sum(-1)))
    read_upto = 0 if decoder.read is None else (wire.shape[1] if latent_decode == "read"
                                                else wire.shape[1] - msg.header.latent_slots)
    parts = [_map_rows(wire[:, :read_upto], decoder.read)] if read_upto else []
    if read_upto < wire.shape[1]:
        thought = _map_rows(wire[:, read_upto:], decoder)
        parts.append(_map_rows(thought, realign) if decoder.realign_after else thought)
    return _decoded(msg, torch.cat(parts, dim=1), msg.tensors["mask"], receiver, out_dtype)


def _decoded(msg: LatentMessage, vecs: torch.Tensor, mask: torch.Tensor, receiver: str, out_dtype,
             **fields) -> LatentMessage:
    if not bool(torch.isfinite(vecs).all()):
        raise MessageError("decoding produced NaN/Inf; the codec part is damaged or does not fit these models",
                           sender=msg.sender, receiver=receiver, field="hidden")
    tensors = {"embeds": vecs.to(out_dtype), "mask": mask}
    header = {k: v for k, v in msg.header.extra.items() if k != "space"}
    return LatentMessage(msg.header, {}).replace(tensors=tensors, kind="embeds", extra=header, **fields)
