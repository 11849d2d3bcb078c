"""relative: relative representations, zero-shot. A vector is sent as its cosines to K
anchor points, each model's states at the same anchor texts and character offsets,
centred on that model's anchor mean (LLM spaces are anisotropic). The cosines do not
change when a space is rotated or scaled, so any model that computed the same anchors
can read them: no map between models is fitted. The receiver reconstructs a vector in
its own space by a ridge least-squares solve against its anchors (lossy: rank <= K),
scaled to its anchors' mean centred norm (latent-step states), or maps the cosines to
its input embedding of the token at that place by a ridge map fitted on its own anchor
points alone (prompt states). Neither needs the other model.

One part per model; all parts of one fit share the anchor points (the wire space).
"""
from __future__ import annotations

import hashlib

import torch

from .base import Decoder, Encoder, Part, Receiver, SharedSpaceCodec, affine, common_keys, read_targets, \
    ridge_fit, to_norm
from .storage import model_entry

DEFAULT_K = 1024
DEFAULT_LAMBDA = 1e-3


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-8)


class RelativeEncoder(Encoder):
    def __init__(self, part: Part):
        self.mean, self.anchors, self.space = part.tensors["mean"], part.tensors["anchors"], part.meta["space"]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        centred = x.float() - self.mean.to(x.device)
        return unit_rows(centred) @ self.anchors.to(x.device).T  # [N, K] cosines


class RelativeDecoder(Decoder):
    def __init__(self, part: Part):
        self.mean, self.recon, self.scale = part.tensors["mean"], part.tensors["recon"], part.tensors["scale"]
        self.space, self.in_dim = part.meta["space"], self.recon.shape[0]
        t = part.tensors
        self.read = lambda rel: to_norm(affine(rel, t["read_weight"], t["read_bias"]), t["read_norm"])

    def __call__(self, rel: torch.Tensor) -> torch.Tensor:
        direction = unit_rows(rel.float() @ self.recon.to(rel.device))
        return self.mean.to(rel.device) + self.scale.to(rel.device) * direction


class Relative(SharedSpaceCodec):
    key = "relative"

    def fit(self, states: dict, edges: list) -> list:
        k = int(self.options.get("relative_k", DEFAULT_K))
        lam = float(self.options.get("relative_lambda", DEFAULT_LAMBDA))
        models = sorted({m for e in edges for m in e})
        keys = common_keys([states[m] for m in models])
        pick = torch.linspace(0, len(keys) - 1, min(k, len(keys))).round().long().unique().tolist()
        keys = tuple(keys[i] for i in pick)
        anchor_hash = states[models[0]].anchor_hash
        space = "relative:" + hashlib.sha1(f"{anchor_hash}{keys}".encode()).hexdigest()[:16]
        return [self._fit_one(m, states[m], keys, lam, space) for m in models]

    def _fit_one(self, ref: str, st, keys: tuple, lam: float, space: str) -> Part:
        h = st.rows(keys).double()
        mean = h.mean(0)
        centred = h - mean
        anchors = unit_rows(centred)
        gram = anchors.T @ anchors
        penalty = lam * gram.diagonal().mean().clamp_min(1e-12)
        recon = anchors @ torch.linalg.inv(gram + penalty * torch.eye(gram.shape[0], dtype=gram.dtype))
        scale = centred.norm(dim=-1).mean()
        all_keys = st.keys  # the read map learns from every point of this model, through its own cosines
        rel = unit_rows(st.hidden.double() - mean) @ anchors.T
        e, norm = read_targets(st, all_keys)
        read_w, read_b = ridge_fit(rel.float(), e, lam)
        meta = {"codec": self.key, "models": {"model": model_entry(ref, st.fingerprint)},
                "anchors": {"hash": st.anchor_hash, "points": len(keys)}, "layers": "last", "space": space,
                "options": {"relative_k": len(keys), "relative_lambda": lam}}
        tensors = {"mean": mean.float(), "anchors": anchors.float(), "recon": recon.float(),
                   "scale": scale.float().reshape(1), "read_weight": read_w, "read_bias": read_b, "read_norm": norm}
        return Part(self.encode_part(ref, ref), tensors, meta)

    def encoder(self, part: Part, fingerprint: dict) -> Encoder:
        return RelativeEncoder(part)

    def decoder(self, part: Part, receiver: Receiver) -> Decoder:
        return RelativeDecoder(part)
