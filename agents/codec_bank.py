"""The codec halves one actor applies, loaded once per part and checked against its model."""
from __future__ import annotations

import torch

from latentray.channels.codecs import make_codec, part_role
from latentray.channels.codecs.base import Receiver
from latentray.channels.codecs.storage import check_fingerprint, load_part
from latentray.channels.errors import CodecError


class CodecBank:
    """parts: {name: Part} shipped with the actor (a run's parts travel through the object
    store, so an actor on another node reads no path of the driver's machine); a part not
    among them is read from the call's codec directory. embeddings: the model's input
    embedding module, for decoders that read its vocabulary."""

    def __init__(self, fingerprint: dict, parts: dict | None = None, embeddings=None):
        self.fingerprint = fingerprint
        self.receiver = Receiver(fingerprint, int(fingerprint["hidden_size"]), embeddings)
        self.parts = dict(parts or {})
        self._halves: dict = {}

    def _part(self, codec, use, directory: str, side: str):
        if not use.part:
            return None
        if use.part in self.parts:
            part = self.parts[use.part]
        elif not directory:
            raise CodecError(f"codec {use.codec} needs fitted part {use.part!r} but the run names no "
                             "channels.codecs directory")
        else:
            part = load_part(directory, use.part)
        if part.meta.get("codec") != use.codec:
            raise CodecError(f"part {use.part!r} holds codec {part.meta.get('codec')!r}, not {use.codec!r}")
        check_fingerprint(part.meta, part_role(codec, side), self.fingerprint, use.part)
        return part

    def _half(self, side: str, use, directory: str):
        key = (side, use, directory)
        if key not in self._halves:
            codec = make_codec(use.codec, **({"read": use.read} if use.read != "mixture" else {}))
            part = self._part(codec, use, directory, side)
            try:
                half = (codec.encoder(part, self.fingerprint) if side == "encode"
                        else codec.decoder(part, self.receiver))
                if part is not None:
                    _probe(half, side, self.receiver.hidden_size)
            except CodecError:
                raise
            except (KeyError, IndexError, RuntimeError, ValueError) as exc:  # a part its codec cannot use
                raise CodecError(f"codec part {use.part!r} in {directory} does not fit its codec {use.codec} "
                                 f"({type(exc).__name__}: {exc}); refit it with latentray fit-codec") from None
            self._halves[key] = half
        return self._halves[key]

    def encoder(self, use, directory: str):
        return self._half("encode", use, directory)

    def decoder(self, use, directory: str):
        return self._half("decode", use, directory)


def _probe(half, side: str, hidden_size: int) -> None:
    """Run a fitted half once on zeros, so a part with missing or misshapen tensors fails
    here, naming the part, and not as a torch error inside a step. ValueError if wrong."""
    if half is None:
        return
    if side == "encode":
        half(torch.zeros(1, hidden_size))
        return
    if half.in_dim is None:
        return
    x = torch.zeros(1, half.in_dim)
    for name, fn in (("decoder", half), ("read map", half.read)):
        out = fn(x) if fn is not None else None
        if out is not None and tuple(out.shape) != (1, hidden_size):
            raise ValueError(f"its {name} outputs vectors of size {out.shape[-1]}, the model has {hidden_size}")
