"""identity: the vectors arrive as they were sent and are used as they are (no realignment).
For `embeds` edges, whose vectors are already in the receiver's input space."""
from __future__ import annotations

from .base import Codec, Decoder, Receiver


class PassThrough(Decoder):
    realign_after = False

    def __init__(self, in_dim: int | None, space: str = "", realign_after: bool = False):
        self.in_dim, self.space, self.realign_after = in_dim, space, realign_after

    def __call__(self, x):
        return x


class Identity(Codec):
    key = "identity"
    needs_fit = False

    def decoder(self, part, receiver: Receiver) -> Decoder:
        return PassThrough(receiver.hidden_size)
