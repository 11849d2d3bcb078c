"""hub: a universal latent space of dimension d shared by every model of a spec, with one
encoder (model -> hub) and one decoder (hub -> model) per model: N models need 2N maps,
not N^2, and a message encoded once can be read by every model.

Fitted in closed form against a reference model: the hub space is the top-d principal
subspace of the reference's centred anchor states; each model's encoder is the affine
ridge map from its states to the reference's hub coordinates at the same anchor points,
its decoder the ridge map back. What travels is the d-dimensional hub vector. The maps
can then be trained further by distillation (runtime/codec_distill.py), models frozen.

One part per model: encoder_weight [D_m, d], encoder_bias [d], decoder_weight [d, D_m],
decoder_bias [D_m].
"""
from __future__ import annotations

import hashlib

import torch

from channels.errors import CodecError

from .base import Codec, Decoder, Encoder, Linear, Part, Receiver, common_keys, mean_cosine, model_slug, ridge_fit
from .storage import model_entry

DEFAULT_DIM = 512
DEFAULT_LAMBDA = 1e-3


def hub_basis(h: torch.Tensor, dim: int) -> tuple:
    """(mean [D], orthonormal basis [D, dim]) of the top-dim principal subspace of h [P, D]."""
    mean = h.double().mean(0)
    _, _, vh = torch.linalg.svd(h.double() - mean, full_matrices=False)
    return mean.float(), vh[:dim].T.float()


class Hub(Codec):
    key = "hub"
    shared_space = True

    def encode_part(self, src: str, dst: str) -> str:
        return f"hub--{model_slug(src)}"

    def decode_part(self, src: str, dst: str) -> str:
        return f"hub--{model_slug(dst)}"

    def fit(self, states: dict, edges: list) -> list:
        models = list(dict.fromkeys(m for e in edges for m in e))  # edge order: the first sender leads
        reference = self.options.get("reference") or models[0]
        if reference not in states:
            raise CodecError(f"hub reference model {reference!r} is not one of the spec's models {sorted(states)}")
        lam = float(self.options.get("hub_lambda", DEFAULT_LAMBDA))
        keys = common_keys([states[m] for m in {*models, reference}])
        ref_h = states[reference].rows(keys)
        dim = min(int(self.options.get("hub_dim") or DEFAULT_DIM), ref_h.shape[1], len(keys) - 1)
        mean, basis = hub_basis(ref_h, dim)
        target = (ref_h - mean) @ basis  # [P, d] hub coordinates of every anchor point
        ref_fp = states[reference].fingerprint
        space = "hub:" + hashlib.sha1(f"{ref_fp.get('weights_hash')}{states[reference].anchor_hash}{dim}{lam}{keys}"
                                      .encode()).hexdigest()[:16]
        parts = []
        for m in models:
            h = states[m].rows(keys)
            enc_w, enc_b = ridge_fit(h, target, lam)
            dec_w, dec_b = ridge_fit(target, h, lam)
            meta = {"codec": self.key, "models": {"model": model_entry(m, states[m].fingerprint),
                                                  "reference": model_entry(reference, ref_fp)},
                    "anchors": {"hash": states[m].anchor_hash, "points": len(keys)}, "layers": "last",
                    "space": space, "options": {"hub_dim": dim, "hub_lambda": lam},
                    "fit": {"encode_cosine": mean_cosine(h @ enc_w + enc_b, target),
                            "roundtrip_cosine": mean_cosine((h @ enc_w + enc_b) @ dec_w + dec_b, h),
                            "distill_steps": 0}}
            parts.append(Part(f"hub--{model_slug(m)}", {"encoder_weight": enc_w, "encoder_bias": enc_b,
                                                        "decoder_weight": dec_w, "decoder_bias": dec_b}, meta))
        return parts

    def encoder(self, part: Part, fingerprint: dict) -> Encoder:
        return Linear(part.tensors["encoder_weight"], part.tensors["encoder_bias"], part.meta["space"])

    def decoder(self, part: Part, receiver: Receiver) -> Decoder:
        return Linear(part.tensors["decoder_weight"], part.tensors["decoder_bias"], part.meta["space"])
