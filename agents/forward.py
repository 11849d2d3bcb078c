"""One forward pass over new slots after an optional cache, with explicit masks and positions.

Left padding means pads can sit in the middle of a row (a padded prompt after a cached
prefix). They are masked out as keys, and position ids skip them, so every real slot
sees exactly what it would see with no padding at all.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ForwardOut:
    cache: object  # transformers cache holding every slot so far
    last_hidden: torch.Tensor  # [B, D] final-norm hidden state at the last slot
    logits: torch.Tensor  # [B, V] next-token logits at the last slot (float32)


def new_positions(next_pos: torch.Tensor, new_mask: torch.Tensor) -> torch.Tensor:
    """Positions for new slots: real slots continue from next_pos[b]; pads repeat a neighbour."""
    steps = new_mask.long().cumsum(-1) - 1
    return (next_pos[:, None] + steps.clamp_min(0)).long()


def next_positions(mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """[B] one past the largest position of a real slot in each row (0 for an empty row)."""
    if mask.shape[1] == 0:
        return torch.zeros(mask.shape[0], dtype=torch.long, device=mask.device)
    real = torch.where(mask.bool(), positions, torch.full_like(positions, -1))
    return real.max(dim=-1).values + 1


def logits_from_hidden(model, hidden: torch.Tensor) -> torch.Tensor:
    logits = model.get_output_embeddings()(hidden).float()
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


@torch.inference_mode()
def forward_slots(model, *, cache, past_mask, inputs_embeds, new_mask, positions) -> ForwardOut:
    """Run the decoder over new slots. past_mask [B, T0]; inputs_embeds [B, S, D]."""
    full_mask = torch.cat([past_mask, new_mask], dim=1).long()
    out = model.base_model(
        inputs_embeds=inputs_embeds, attention_mask=full_mask, position_ids=positions,
        past_key_values=cache, use_cache=True,
    )
    last = out.last_hidden_state[:, -1]
    return ForwardOut(out.past_key_values, last, logits_from_hidden(model, last))
