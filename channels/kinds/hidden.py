"""hidden: last-layer hidden states of the sender, [B, S, D] with mask [B, S].

The states behind each latent step (and, with hidden_states: prompt, the prompt's states
before them; with role, only those of the turn's own text). They live in the sender's
last-layer space, so the edge codec maps them into the receiver's input space (realign
within one model; ridge, relative or hub between models); decoded, a hidden message
arrives as embeds.
"""
from __future__ import annotations

from types import MappingProxyType

from .soft import SoftTokenKind


class HiddenKind(SoftTokenKind):
    name = "hidden"
    tensors = ("hidden", "mask")
    seq_axis = MappingProxyType({"hidden": 1, "mask": 1})
    payload = ("hidden",)
    takes_codec = True
