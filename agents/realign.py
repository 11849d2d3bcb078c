"""The LatentMAS latent step: map a last-layer hidden state back into input-embedding space.

W_a = (W_outᵀ W_out + λI)⁻¹ W_outᵀ W_in, computed once in float32; each mapped vector
is then rescaled to the mean row norm of W_in so it looks like a real token embedding.
With realignment off, W_a = I but the norm rescaling still applies.
"""
from __future__ import annotations

import torch


class Realigner:
    def __init__(self, w_in: torch.Tensor, w_out: torch.Tensor, *, realign: bool = True,
                 ridge_lambda: float = 1e-5):
        w_in32, w_out32 = w_in.detach().float(), w_out.detach().float()
        self.target_norm = w_in32.norm(dim=-1).mean()
        if realign:
            gram = w_out32.T @ w_out32
            gram = gram + ridge_lambda * torch.eye(gram.shape[0], device=gram.device)
            self.matrix = torch.linalg.solve(gram, w_out32.T @ w_in32)
        else:
            self.matrix = None

    @classmethod
    def for_model(cls, model, *, realign: bool = True, ridge_lambda: float = 1e-5) -> "Realigner":
        return cls(model.get_input_embeddings().weight, model.get_output_embeddings().weight,
                   realign=realign, ridge_lambda=ridge_lambda)

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [..., D] (any dtype) -> latent embedding [..., D] in the same dtype."""
        h = hidden.float()
        aligned = h @ self.matrix if self.matrix is not None else h
        norm = aligned.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        return (aligned * (self.target_norm / norm)).to(hidden.dtype)
