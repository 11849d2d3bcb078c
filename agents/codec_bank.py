"""The codec halves one actor applies, loaded once per part and checked against its model."""
from __future__ import annotations

from channels.codecs import make_codec, part_role
from channels.codecs.base import Receiver
from channels.codecs.storage import check_fingerprint, load_part
from channels.errors import CodecError


class CodecBank:
    def __init__(self, fingerprint: dict):
        self.fingerprint = fingerprint
        self.receiver = Receiver(fingerprint, int(fingerprint["hidden_size"]))
        self._halves: dict = {}

    def _part(self, codec, use, directory: str, side: str):
        if not use.part:
            return None
        if not directory:
            raise CodecError(f"codec {use.codec} needs fitted part {use.part!r} but the run names no "
                             "channels.codecs directory")
        part = load_part(directory, use.part)
        if part.meta.get("codec") != use.codec:
            raise CodecError(f"part {use.part!r} holds codec {part.meta.get('codec')!r}, not {use.codec!r}")
        check_fingerprint(part.meta, part_role(codec, side), self.fingerprint, use.part)
        return part

    def _half(self, side: str, use, directory: str):
        key = (side, use, directory)
        if key not in self._halves:
            codec = make_codec(use.codec)
            part = self._part(codec, use, directory, side)
            self._halves[key] = (codec.encoder(part, self.fingerprint) if side == "encode"
                                 else codec.decoder(part, self.receiver))
        return self._halves[key]

    def encoder(self, use, directory: str):
        return self._half("encode", use, directory)

    def decoder(self, use, directory: str):
        return self._half("decode", use, directory)
