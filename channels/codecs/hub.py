"""hub: a universal latent space of dimension d shared by every model of a spec, with one
encoder (model -> hub) and one decoder (hub -> model) per model: N models need 2N maps,
not N^2, and a message encoded once can be read by every model.

Fitted in closed form against a reference model: the hub space is the top-d principal
subspace of the reference's centred anchor states; each model's encoder is the affine
ridge map from its states to the reference's hub coordinates at the same anchor points,
its decoder the ridge map back (into its input embeddings of the token at that place,
the read head, and into its last-layer space, the think head), fitted on every model's
encoding of the anchor points, so it learns to read what other models send. What travels is
the d-dimensional hub vector. The maps can then be trained further by distillation
(runtime/codec_distill.py), models frozen.

One part per model: encoder_weight [D_m, d], encoder_bias [d], decoder_weight [d, D_m],
decoder_bias [D_m], decoder_read_weight [d, D_m], decoder_read_bias [D_m], read_norm [1].
"""
from __future__ import annotations

import hashlib

import torch

from latentray.channels.errors import CodecError

from .base import Decoder, Encoder, Linear, Part, Receiver, SharedSpaceCodec, common_keys, mean_cosine, \
    read_targets, ridge_fit
from .storage import model_entry

DEFAULT_DIM = 512
DEFAULT_LAMBDA = 1e-3


def hub_basis(h: torch.Tensor, dim: int) -> tuple:
    """(mean [D], orthonormal basis [D, dim]) of the top-dim principal subspace of h [P, D]."""
    mean = h.double().mean(0)
    _, _, vh = torch.linalg.svd(h.double() - mean, full_matrices=False)
    return mean.float(), vh[:dim].T.float()


class Hub(SharedSpaceCodec):
    key = "hub"

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
        encoders = {m: ridge_fit(states[m].rows(keys), target, lam) for m in models}
        # Each decoder learns from what it will receive: every model's encoding of the
        # anchor points, not only the reference's exact coordinates.
        received = torch.cat([states[m].rows(keys) @ w + b for m, (w, b) in encoders.items()])
        parts = []
        for m in models:
            h = states[m].rows(keys)
            enc_w, enc_b = encoders[m]
            e, norm = read_targets(states[m], keys)
            dec_w, dec_b = ridge_fit(received, h.repeat(len(models), 1), lam)
            read_w, read_b = ridge_fit(received, e.repeat(len(models), 1), lam)
            meta = {"codec": self.key, "models": {"model": model_entry(m, states[m].fingerprint),
                                                  "reference": model_entry(reference, ref_fp)},
                    "anchors": {"hash": states[m].anchor_hash, "points": len(keys)}, "layers": "last",
                    "space": space, "options": {"hub_dim": dim, "hub_lambda": lam},
                    "fit": {"encode_cosine": mean_cosine(h @ enc_w + enc_b, target),
                            "roundtrip_cosine": mean_cosine((h @ enc_w + enc_b) @ dec_w + dec_b, h),
                            "read_cosine": mean_cosine((h @ enc_w + enc_b) @ read_w + read_b, e), "distill_steps": 0}}
            tensors = {"encoder_weight": enc_w, "encoder_bias": enc_b, "decoder_weight": dec_w, "decoder_bias": dec_b,
                       "decoder_read_weight": read_w, "decoder_read_bias": read_b, "read_norm": norm}
            parts.append(Part(self.encode_part(m, m), tensors, meta))
        return parts

    def encoder(self, part: Part, fingerprint: dict) -> Encoder:
        return Linear(part.tensors["encoder_weight"], part.tensors["encoder_bias"], part.meta["space"])

    def decoder(self, part: Part, receiver: Receiver) -> Decoder:
        t = part.tensors
        return Linear(t["decoder_weight"], t["decoder_bias"], part.meta["space"],
                      read=(t["decoder_read_weight"], t["decoder_read_bias"], t["read_norm"]))
