"""embeds: soft tokens already in the input-embedding space, [B, S, D] with mask [B, S].

The latent vectors the sender fed back into itself. They are in the sender's own input
space, so only an agent of the same model can read them; between different models send
hidden states with a codec instead.
"""
from __future__ import annotations

from types import MappingProxyType

from .soft import SoftTokenKind


class EmbedsKind(SoftTokenKind):
    name = "embeds"
    tensors = ("embeds", "mask")
    seq_axis = MappingProxyType({"embeds": 1, "mask": 1})
    payload = ("embeds",)
    same_model_only = True
    same_model_why = ": embeds are vectors in the sender's own input space"
    same_model_fix = "use kind hidden with a codec (ridge, relative or hub) between different models"
