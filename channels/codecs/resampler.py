"""resampler: a trained soft-token adapter in a hub space (2N parts for N models).

Sender side (one encoder part per model): every last-layer state is RMS-normalised and
mapped into a hub space of size d (row by row, so what travels is [S, d] per problem).
Receiver side (one decoder part per model): K learned queries read the whole message by
multi-head cross-attention (pads masked out), a small MLP refines them, and each becomes
one soft token in the receiver's input space: projected to D, rescaled to the receiver's
mean embedding norm and multiplied by its own tanh gate. The receiver reads K soft tokens
whatever the message's length.

The design follows the resamplers of vision-language models and Vision Wormhole's hub
codec (learned queries that cross-attend to the sender's states, N encoders and N decoders
into one space) rather than a KV translator: it needs no layer alignment between models of
different depths, works for `hidden` messages within one model too, and its parts are a
few MB. The models stay frozen; only these parts train, with the receiver's own language-
model loss on the answer (runtime/codecs/train.py, `latentray train-codec`).

Encoder part `resampler-enc--<model>`: encoder_weight [D, d], encoder_bias [d].
Decoder part `resampler-dec--<model>`: queries [K, d]; attn_q/attn_k/attn_v/attn_o [d, d];
mlp_in [d, 2d], mlp_in_bias [2d], mlp_out [2d, d], mlp_out_bias [d]; out_weight [d, D],
out_bias [D]; gate [K]; read_norm [1] (fixed: the receiver's mean embedding norm).
"""
from __future__ import annotations

import hashlib
import math

import torch

from latentray.channels.errors import CodecError

from .base import Decoder, Encoder, Part, Receiver, SharedSpaceCodec, model_slug
from .storage import model_entry

DEFAULT_DIM = 256
DEFAULT_TOKENS = 8
DEFAULT_HEADS = 4
INIT_GATE = 1.0
ENCODER_KEYS = ("encoder_weight", "encoder_bias")
DECODER_KEYS = ("queries", "attn_q", "attn_k", "attn_v", "attn_o", "mlp_in", "mlp_in_bias", "mlp_out", "mlp_out_bias",
                "out_weight", "out_bias", "gate", "read_norm")
FROZEN = ("read_norm",)  # not trained: a property of the receiver


def rms_rows(x: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)


def encode_rows(x: torch.Tensor, t: dict) -> torch.Tensor:
    """[..., D] sender states -> [..., d] hub vectors."""
    return rms_rows(x.float()) @ t["encoder_weight"] + t["encoder_bias"]


def resample(z: torch.Tensor, mask: torch.Tensor, t: dict, heads: int) -> torch.Tensor:
    """z [B, S, d] hub vectors with mask [B, S] (1 = real) -> [B, K, D] soft tokens."""
    b, s, d = z.shape
    k = t["queries"].shape[0]
    hd = d // heads
    q = (t["queries"] @ t["attn_q"]).reshape(k, heads, hd).transpose(0, 1)  # [H, K, hd]
    keys = (z @ t["attn_k"]).reshape(b, s, heads, hd).transpose(1, 2)  # [B, H, S, hd]
    values = (z @ t["attn_v"]).reshape(b, s, heads, hd).transpose(1, 2)
    scores = (q[None] @ keys.transpose(-1, -2)) / math.sqrt(hd)  # [B, H, K, S]
    scores = scores.masked_fill(~mask.bool()[:, None, None, :], float("-inf"))
    weights = torch.softmax(scores, -1).nan_to_num(0.0)  # a message with no real slot reads nothing
    read = (weights @ values).transpose(1, 2).reshape(b, k, d) @ t["attn_o"]
    h = t["queries"][None] + read
    h = h + torch.nn.functional.gelu(rms_rows(h) @ t["mlp_in"] + t["mlp_in_bias"]) @ t["mlp_out"] + t["mlp_out_bias"]
    y = rms_rows(h) @ t["out_weight"] + t["out_bias"]
    y = y * (t["read_norm"] / y.norm(dim=-1, keepdim=True).clamp_min(1e-6))
    return torch.tanh(t["gate"])[None, :, None] * y


def init_encoder(hidden: int, dim: int, generator: torch.Generator) -> dict:
    return {"encoder_weight": torch.randn(hidden, dim, generator=generator) / math.sqrt(hidden),
            "encoder_bias": torch.zeros(dim)}


def init_decoder(hidden: int, dim: int, tokens: int, read_norm: float, generator: torch.Generator) -> dict:
    def w(i, o):
        return torch.randn(i, o, generator=generator) / math.sqrt(i)
    return {"queries": torch.randn(tokens, dim, generator=generator), "attn_q": w(dim, dim), "attn_k": w(dim, dim),
            "attn_v": w(dim, dim), "attn_o": w(dim, dim), "mlp_in": w(dim, 2 * dim),
            "mlp_in_bias": torch.zeros(2 * dim),
            "mlp_out": w(2 * dim, dim) * 0.1, "mlp_out_bias": torch.zeros(dim), "out_weight": w(dim, hidden),
            "out_bias": torch.zeros(hidden), "gate": torch.full((tokens,), INIT_GATE),
            "read_norm": torch.tensor([float(read_norm)])}


class ResamplerEncoder(Encoder):
    def __init__(self, tensors: dict, space: str):
        self.tensors, self.space = {k: tensors[k].float() for k in ENCODER_KEYS}, space

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return encode_rows(x, {k: v.to(x.device) for k, v in self.tensors.items()})


class ResamplerDecoder(Decoder):
    """Reads a whole message at once (`decode_set`), not row by row."""
    realign_after = False

    def __init__(self, tensors: dict, space: str, heads: int):
        self.tensors, self.space, self.heads = {k: tensors[k].float() for k in DECODER_KEYS}, space, heads
        self.in_dim = self.tensors["queries"].shape[1]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """One vector read as a one-slot message: the K soft tokens' mean (used only to probe shapes)."""
        return self.decode_set(x[None], torch.ones(1, x.shape[0], dtype=torch.long))[0].mean(1)

    def decode_set(self, wire: torch.Tensor, mask: torch.Tensor) -> tuple:
        t = {k: v.to(wire.device) for k, v in self.tensors.items()}
        out = resample(wire.float(), mask.to(wire.device), t, self.heads)
        return out, torch.ones(out.shape[:2], dtype=torch.long, device=wire.device)


class Resampler(SharedSpaceCodec):
    key = "resampler"
    trained = True  # parts come from `latentray train-codec`, not from fit-codec's closed form

    def encode_part(self, src: str, dst: str) -> str:
        return f"{self.key}-enc--{model_slug(src)}"

    def decode_part(self, src: str, dst: str) -> str:
        return f"{self.key}-dec--{model_slug(dst)}"

    def fit(self, states: dict, edges: list) -> list:
        raise CodecError("the resampler codec is trained, not fitted: run `latentray train-codec SPEC --out DIR`")

    def init_parts(self, models: dict, embed_norms: dict, seed: int) -> list:
        """Untrained parts (an encoder and a decoder per model) for {ref: fingerprint}."""
        dim = int(self.options.get("dim") or DEFAULT_DIM)
        tokens = int(self.options.get("tokens") or DEFAULT_TOKENS)
        heads = int(self.options.get("heads") or DEFAULT_HEADS)
        if dim % heads:
            raise CodecError(f"resampler: dim {dim} must be a multiple of heads {heads}")
        g = torch.Generator().manual_seed(seed)
        options = {"dim": dim, "tokens": tokens, "heads": heads}
        parts = []
        for ref, fp in models.items():
            hidden = int(fp["hidden_size"])
            entry = {"model": model_entry(ref, fp)}
            parts.append(Part(self.encode_part(ref, ref), init_encoder(hidden, dim, g),
                              {"codec": self.key, "trained": True, "side": "encode", "models": entry, "layers": "last",
                               "options": options}))
            parts.append(Part(self.decode_part(ref, ref), init_decoder(hidden, dim, tokens, embed_norms[ref], g),
                              {"codec": self.key, "trained": True, "side": "decode", "models": entry, "layers": "last",
                               "options": options}))
        return parts

    @staticmethod
    def space_of(parts: list, salt: str) -> str:
        """The wire space of one training: every part's tensors hashed together."""
        h = hashlib.sha1(salt.encode())
        for p in sorted(parts, key=lambda p: p.name):
            for k in sorted(p.tensors):
                h.update(p.tensors[k].detach().float().cpu().contiguous().numpy().tobytes())
        return "resampler:" + h.hexdigest()[:16]

    def encoder(self, part: Part, fingerprint: dict) -> Encoder:
        self._check_side(part, "encode")
        return ResamplerEncoder(part.tensors, part.meta["space"])

    def decoder(self, part: Part, receiver: Receiver) -> Decoder:
        self._check_side(part, "decode")
        return ResamplerDecoder(part.tensors, part.meta["space"], int(part.meta["options"]["heads"]))

    def _check_side(self, part: Part, side: str) -> None:
        if part.meta.get("side") != side or "space" not in part.meta:
            raise CodecError(f"part {part.name!r} is not a trained resampler {side}r; train it with "
                             "`latentray train-codec SPEC --out DIR`")
