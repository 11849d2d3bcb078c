"""latent_only: keep only each row's trailing `latent_slots` slots (its latent steps).

Slots are left padded and latent steps are the last thing an agent adds, so the last
`latent_slots` slots of every row are exactly its latent steps, all real. Positions are
kept as written, so the receiver continues from the largest real position (one past the
last latent step) as it would with the full message. Nothing needs undoing.
"""
from __future__ import annotations

import torch

from latentray.channels.errors import CompressionError
from latentray.channels.kinds import MessageKind, find_kind
from latentray.channels.message import LatentMessage

from .base import Compression


class LatentOnly(Compression):
    name = "latent_only"
    stage = 0

    def applies_to(self, kind: MessageKind) -> bool:
        """Needs a mask and a sequence axis on every tensor of the kind, to cut them all."""
        return bool(kind.payload) and "mask" in kind.tensors and all(t in kind.seq_axis for t in kind.tensors)

    def compress(self, msg: LatentMessage, receiver: str = "?") -> LatentMessage:
        self.begin(msg, receiver)
        m, mask = msg.header.latent_slots, msg.tensors["mask"]
        fail = lambda text: CompressionError(text, sender=msg.sender, receiver=receiver,  # noqa: E731
                                             field="latent_slots")
        if m <= 0:
            raise fail(f"{msg.sender!r} sent no latent steps (latent_slots 0), so latent_only would "
                       "send nothing; give the sender latent_steps > 0 or drop latent_only")
        if m > mask.shape[1] or not bool(mask[:, -m:].bool().all()):
            raise fail(f"the last {m} slots are not real in every row (mask width {mask.shape[1]}); "
                       "the message was not built by latent steps")
        seq_axis = find_kind(msg.kind).seq_axis
        out = {}
        for key, t in msg.tensors.items():
            if key not in seq_axis:
                raise fail(f"tensor {key!r} has no known sequence axis; apply latent_only first")
            out[key] = t.narrow(seq_axis[key], t.shape[seq_axis[key]] - m, m)
        seq_lens = tuple(int(n) for n in out["mask"].sum(-1))
        return self.finish(msg, out, seq_lens=seq_lens)

    def decompress(self, msg: LatentMessage, dtype: torch.dtype) -> LatentMessage:
        return self.undo(msg, dict(msg.tensors))
