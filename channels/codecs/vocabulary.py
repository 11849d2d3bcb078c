"""The receiver's vocabulary as the resampler's vocabulary output reads it (resampler.py,
option output vocabulary): a D-vector becomes a softmax over the receiver's embedding rows
by cosine, and is sent as that distribution's mean of what the embedding module outputs,
over the whole vocabulary or each vector's top_k nearest rows."""
from __future__ import annotations

import copy

import torch

DEFAULT_SHARPNESS = 50.0  # cosine -> logit of the vocabulary output
MIX_CHUNK = 256  # vectors mixed at a time outside training


def in_chunks(fn, y: torch.Tensor, empty: torch.Tensor) -> torch.Tensor:
    """fn over the vectors of y [..., D], MIX_CHUNK at a time -> [..., E]; empty [0, E] is
    what no vector gives. A [rows, V] block of a 262K vocabulary's logits is large."""
    flat = y.reshape(-1, y.shape[-1])
    out = [fn(flat[i:i + MIX_CHUNK]) for i in range(0, flat.shape[0], MIX_CHUNK)]
    return (torch.cat(out) if out else empty).reshape(*y.shape[:-1], empty.shape[-1])


class Vocabulary:
    """The receiver's vocabulary as the vocabulary output reads it: the embedding module's
    weight (shared with the model, not copied), each row's inverse norm, and the module's
    own scale (Gemma multiplies by sqrt(d) inside it), so that a mixture of rows is the
    mixture of what the module outputs. sharpness: cosine -> logit; top_k: the mixture and
    its token loss over each vector's k nearest rows only (None: the whole vocabulary)."""

    def __init__(self, embed, sharpness: float = DEFAULT_SHARPNESS, top_k: int | None = None):
        self.weight = embed.weight.detach()
        self.sharpness, self.top_k = float(sharpness), top_k
        ids = torch.arange(min(64, self.weight.shape[0]), device=self.weight.device)
        with torch.no_grad():
            out, raw = embed(ids).float(), self.weight[ids].float()
            self.scale = float(out.norm() / raw.norm().clamp_min(1e-12))
            self.inv_norm = torch.rsqrt(self.weight.float().pow(2).sum(-1).clamp_min(1e-12))  # [V]

    def reading(self, sharpness: float, top_k: int | None = None) -> "Vocabulary":
        """The same table (nothing recomputed) read with another sharpness and top_k."""
        other = copy.copy(self)
        other.sharpness, other.top_k = float(sharpness), top_k
        return other

    def logits(self, y: torch.Tensor) -> torch.Tensor:
        """[..., D] -> [..., V]: sharpness x the cosine of y with every embedding row."""
        w = self.weight.to(y.device)
        cos = (torch.nn.functional.normalize(y.float(), dim=-1).to(w.dtype) @ w.T).float()
        return self.sharpness * cos * self.inv_norm.to(y.device)

    def logits_at(self, y: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """[..., D] and ids [..., k] -> [..., k]: the logits of those rows only."""
        w = self.weight.to(y.device)[ids]  # [..., k, D]
        cos = torch.einsum("...d,...kd->...k", torch.nn.functional.normalize(y.float(), dim=-1).to(w.dtype), w)
        return self.sharpness * cos.float() * self.inv_norm.to(y.device)[ids]

    def nearest(self, y: torch.Tensor) -> torch.Tensor:
        """[..., D] -> [..., k] ids of the top_k largest logits (no gradient; MIX_CHUNK vectors at a time)."""
        k = min(int(self.top_k), self.weight.shape[0])
        with torch.no_grad():
            return in_chunks(lambda c: self.logits(c).topk(k, -1).indices, y, y.new_zeros(0, k, dtype=torch.long))

    def mix(self, y: torch.Tensor) -> torch.Tensor:
        """[..., D] -> [..., D]: the softmax's mean of the embedding module's outputs, over the
        whole vocabulary or the top_k nearest rows. Without gradients, MIX_CHUNK vectors at a
        time: a run's [rows, V] logits of a 262K vocabulary are large."""
        if not torch.is_grad_enabled():
            return in_chunks(self._mix, y, y.new_zeros(0, self.weight.shape[1]))
        return self._mix(y)

    def _mix(self, y: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(y.device)
        if self.top_k is None:
            return (torch.softmax(self.logits(y), -1).to(w.dtype) @ w).float() * self.scale
        ids = self.nearest(y)
        p = torch.softmax(self.logits_at(y, ids), -1).to(w.dtype)
        return torch.einsum("...k,...kd->...d", p, w[ids]).float() * self.scale

    def token_loss(self, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of vectors y [N, D] naming target [N] ids by these logits: over
        the whole vocabulary, or with top_k over the k nearest rows and the target (where the
        target is among them, it is counted once)."""
        if self.top_k is None:
            return torch.nn.functional.cross_entropy(self.logits(y), target)
        ids = self.nearest(y)
        logits = self.logits_at(y, torch.cat([ids, target[:, None]], -1))
        logits = torch.cat([logits[:, :-1].masked_fill(ids == target[:, None], float("-inf")), logits[:, -1:]], -1)
        return torch.nn.functional.cross_entropy(logits, torch.full_like(target, ids.shape[-1]))
