"""realign: within one model, the LatentMAS map. The sender's last-layer states arrive
as they are and the receiving agent realigns them into its input space, exactly as its
own latent steps are. Refuses a message from other weights: they live in another space."""
from __future__ import annotations

from .base import Codec, Decoder, Receiver, raw_space
from .identity import PassThrough


class Realign(Codec):
    key = "realign"
    needs_fit = False

    def decoder(self, part, receiver: Receiver) -> Decoder:
        return PassThrough(receiver.hidden_size, space=raw_space(receiver.fingerprint), realign_after=True)
