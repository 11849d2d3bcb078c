"""ridge: a closed-form affine map from the sender's last-layer hidden space to the
receiver's, fitted on the two models' states at the same anchor points (points are
character offsets at word ends, so different tokenizers line up by character spans).

One part per (sender, receiver) pair; the sender sends its raw states, the receiver
maps them (then realigns them into its input space).
"""
from __future__ import annotations

from .base import Codec, Decoder, Linear, Part, Receiver, common_keys, mean_cosine, model_slug, \
    raw_space, ridge_fit
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
            meta = {"codec": self.key, "models": {"src": model_entry(src, a.fingerprint),
                                                  "dst": model_entry(dst, b.fingerprint)},
                    "anchors": {"hash": a.anchor_hash, "points": len(keys)}, "layers": "last",
                    "space": raw_space(a.fingerprint), "options": {"ridge_lambda": lam},
                    "fit": {"train_cosine": mean_cosine(x @ w + bias, y)}}
            parts.append(Part(self.decode_part(src, dst), {"weight": w, "bias": bias}, meta))
        return parts

    def decoder(self, part: Part, receiver: Receiver) -> Decoder:
        return Linear(part.tensors["weight"], part.tensors["bias"], part.meta["space"])
