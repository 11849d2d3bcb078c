"""ridge: closed-form affine maps from the sender's last-layer hidden space, fitted on the
two models at the same anchor points (points are character offsets at word ends, so
different tokenizers line up by character spans): one into the receiver's last-layer
space (for latent-step states, which the receiver then realigns), one into its input
embeddings of the token at that place (for prompt states: what the sender read).

One part per (sender, receiver) pair; the sender sends its raw states, the receiver maps them.
"""
from __future__ import annotations

from .base import Codec, Decoder, Linear, Part, Receiver, common_keys, mean_cosine, model_slug, \
    raw_space, read_targets, ridge_fit
from .storage import model_entry

DEFAULT_LAMBDA = 1e-3


class Ridge(Codec):
    key = "ridge"

    def decode_part(self, src: str, dst: str) -> str:
        return f"ridge--{model_slug(src)}--to--{model_slug(dst)}"

    def fit(self, states: dict, edges: list) -> list:
        lam = float(self.options.get("ridge_lambda", DEFAULT_LAMBDA))
        parts = []
        for src, dst in sorted(set(edges)):
            a, b = states[src], states[dst]
            keys = common_keys([a, b])
            x, y = a.rows(keys), b.rows(keys)
            w, bias = ridge_fit(x, y, lam)
            e, norm = read_targets(b, keys)
            rw, rb = ridge_fit(x, e, lam)
            meta = {"codec": self.key, "models": {"src": model_entry(src, a.fingerprint),
                                                  "dst": model_entry(dst, b.fingerprint)},
                    "anchors": {"hash": a.anchor_hash, "points": len(keys)}, "layers": "last",
                    "space": raw_space(a.fingerprint), "options": {"ridge_lambda": lam},
                    "fit": {"train_cosine": mean_cosine(x @ w + bias, y), "read_cosine": mean_cosine(x @ rw + rb, e)}}
            tensors = {"weight": w, "bias": bias, "read_weight": rw, "read_bias": rb, "read_norm": norm}
            parts.append(Part(self.decode_part(src, dst), tensors, meta))
        return parts

    def decoder(self, part: Part, receiver: Receiver) -> Decoder:
        t = part.tensors
        return Linear(t["weight"], t["bias"], part.meta["space"], read=(t["read_weight"], t["read_bias"], t["read_norm"]))
