"""The LatentMAS latent step: map a last-layer hidden state back into input-embedding space.

W_a = (W_outᵀ W_out + λI)⁻¹ W_outᵀ E, computed once in float32, where E holds what the
embedding module really outputs for every token (Gemma multiplies by sqrt(d) inside it,
so its raw weight is the wrong space). Each mapped vector is rescaled to the mean norm
of E's rows so it looks like a real token embedding. With realignment off, W_a = I but
the norm rescaling still applies.

One Realigner per model and settings, shared by every agent of that model in a process.
"""
from __future__ import annotations

import weakref

import torch

_CHUNK = 16384  # vocabulary rows embedded at a time: bounds memory for 262K-token vocabularies
_SHARED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


@torch.inference_mode()
def embedding_statistics(model, w_out: torch.Tensor | None = None) -> tuple:
    """(mean row norm of E, W_outᵀE [D, D] or None), E = the embedding module's outputs."""
    embed = model.get_input_embeddings()
    vocab = embed.weight.shape[0]
    device = embed.weight.device
    norm_sum = torch.zeros((), dtype=torch.float64, device=device)
    cross = None
    for start in range(0, vocab, _CHUNK):
        ids = torch.arange(start, min(start + _CHUNK, vocab), device=device)
        e = embed(ids).float()
        norm_sum += e.norm(dim=-1).double().sum()
        if w_out is not None:
            part = w_out[start:start + len(ids)].float().T @ e
            cross = part if cross is None else cross + part
    return (norm_sum / vocab).float(), cross


class Realigner:
    def __init__(self, model, *, realign: bool = True, ridge_lambda: float = 1e-5):
        w_out = model.get_output_embeddings().weight.detach() if realign else None
        self.target_norm, cross = embedding_statistics(model, w_out)
        if realign:
            w32 = w_out.float()
            gram = w32.T @ w32 + ridge_lambda * torch.eye(w32.shape[1], device=w32.device)
            self.matrix = torch.linalg.solve(gram, cross)
        else:
            self.matrix = None

    @classmethod
    def for_model(cls, model, *, realign: bool = True, ridge_lambda: float = 1e-5) -> "Realigner":
        """The model's shared Realigner for these settings (built on first use)."""
        per_model = _SHARED.setdefault(model, {})
        key = (bool(realign), float(ridge_lambda))
        if key not in per_model:
            per_model[key] = cls(model, realign=realign, ridge_lambda=ridge_lambda)
        return per_model[key]

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [..., D] (any dtype) -> latent embedding [..., D] in the same dtype."""
        h = hidden.float()
        aligned = h @ self.matrix if self.matrix is not None else h
        norm = aligned.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        return (aligned * (self.target_norm / norm)).to(hidden.dtype)
