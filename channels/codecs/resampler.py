"""resampler: a trained soft-token adapter in a hub space (2N parts for N models).

Sender side (one encoder part per model): every state of the message (the last layer's,
or a decoder layer's: channels.hidden_layer, recorded in the parts as `layers`) is
RMS-normalised and mapped into a hub space of size d (row by row, so what travels is
[S, d] per problem).
Receiver side (one decoder part per model), in one of two shapes (option `tokens`):
- K (a number): K learned queries read the whole message by multi-head cross-attention
  (pads masked out), a small MLP refines them, and each becomes one soft token. The
  receiver reads K soft tokens whatever the message's length.
- rows: every row of the message becomes one soft token: it reads the whole message by
  the same attention (its own row as the query: self-attention over the message), then
  the MLP. The receiver reads as many soft tokens as the message has real rows, so a
  passage's tokens can each arrive as one. With per_row P, a row has up to P soft tokens
  (slot 0 projected by out_weight, slot k by slot_out_weight[k - 1]) and sends those whose
  presence logit is above 0: across tokenizers one sender token may be several receiver
  tokens (' Tomas' is ' T' + 'omas' to SmolLM2) or none (the second half of a word the
  receiver holds whole).
Each soft token is projected to D, then (option `output`):
- free (the default): rescaled to the receiver's mean embedding norm and multiplied by a
  tanh gate (one per query; one for all rows);
- vocabulary: read as a distribution over the receiver's vocabulary (a softmax of
  `sharpness` x its cosine with every row of the receiver's embedding table), and sent as
  that distribution's mean of what the embedding module outputs. A soft token then stays
  on the receiver's own input manifold (a sure token is exactly that token's embedding, an
  unsure one a mixture, as "soft thinking" feeds a model its own output distribution),
  and the table itself is the receiver's, frozen, never stored in a part. With top_k, the
  softmax is over each soft token's k nearest rows only (as soft thinking keeps its top-k
  tokens): training then needs no gradient through [rows, V] logits, which for Gemma's
  262,144-token vocabulary cost ~20 s a step on 2 cores. A run may read each soft token as
  its most likely token's embedding instead (option read nearest, from the spec's
  channels.codec_read): the receiver then reads its own tokens, as it would text.

The design follows the resamplers of vision-language models and Vision Wormhole's hub
codec (learned queries that cross-attend to the sender's states, N encoders and N decoders
into one space) rather than a KV translator: it needs no layer alignment between models of
different depths, works for `hidden` messages within one model too, and its parts are a
few MB. The models stay frozen; only these parts train, with the receiver's own language-
model loss on the answer (runtime/codecs/train.py, `latentray train-codec`).

Encoder part `resampler-enc--<model>`: encoder_weight [D, d], encoder_bias [d]; in_mean [D],
in_scale [D] (fixed: the sender's per-dimension statistics at its layer, measured on
training messages before training; absent in parts trained without them).
Decoder part `resampler-dec--<model>`: queries [K, d] (not in rows); attn_q/attn_k/attn_v/
attn_o [d, d]; mlp_in [d, 2d], mlp_in_bias [2d], mlp_out [2d, d], mlp_out_bias [d];
out_weight [d, D], out_bias [D]; with output free, gate [K] ([1] in rows) and read_norm [1]
(fixed: the receiver's mean embedding norm); with per_row P, presence_weight [d, P],
presence_bias [P] and, for P > 1, slot_out_weight [P-1, d, D], slot_out_bias [P-1, D].
"""
from __future__ import annotations

import hashlib
import math

import torch

from latentray.channels.errors import CodecError

from .base import Decoder, Encoder, Part, Receiver, SharedSpaceCodec, model_slug
from .storage import model_entry
from .vocabulary import DEFAULT_SHARPNESS, Vocabulary

DEFAULT_DIM = 256
DEFAULT_TOKENS = 8
DEFAULT_HEADS = 4
INIT_GATE = 1.0
ENCODER_KEYS = ("encoder_weight", "encoder_bias")  # and in_mean, in_scale where the training measured them
STANDARDISE = ("in_mean", "in_scale")
ROWS = "rows"  # option tokens: one soft token per message row
DECODER_KEYS = ("attn_q", "attn_k", "attn_v", "attn_o", "mlp_in", "mlp_in_bias", "mlp_out", "mlp_out_bias",
                "out_weight", "out_bias")  # and queries, unless rows; and FREE_KEYS with output free
FREE_KEYS = ("gate", "read_norm")
SLOT_KEYS = ("presence_weight", "presence_bias", "slot_out_weight", "slot_out_bias")  # with per_row
INIT_PRESENCE = 2.0  # the presence logit's initial bias: slot 0 sent, the others not
OUTPUTS = ("free", "vocabulary")  # option output
FROZEN = ("read_norm", "in_mean", "in_scale")  # not trained: properties of the receiver and of the sender's states


def rms_rows(x: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)


def encode_rows(x: torch.Tensor, t: dict) -> torch.Tensor:
    """[..., D] sender states -> [..., d] hub vectors. Where the part has them, every
    dimension is first standardised by the sender's own statistics at that layer: a middle
    layer's residual stream has a few dimensions far larger than the rest and common to all
    tokens, which would otherwise drown what tells one token from another."""
    x = x.float()
    if "in_mean" in t:
        x = (x - t["in_mean"]) / t["in_scale"]
    return rms_rows(x) @ t["encoder_weight"] + t["encoder_bias"]


def state_statistics(rows: torch.Tensor) -> dict:
    """in_mean and in_scale [D] of sender states [N, D] (a scale never below 1e-3 of the median)."""
    rows = rows.float()
    scale = rows.std(0)
    return {"in_mean": rows.mean(0), "in_scale": scale.clamp_min(1e-3 * float(scale.median()) + 1e-12)}


def read_message(z: torch.Tensor, mask: torch.Tensor, t: dict, heads: int) -> tuple:
    """z [B, S, d] hub vectors with mask [B, S] (1 = real) -> ([B, N, d] what each soft
    token read, [B, N] their mask): N = K learned queries (all real), or in rows (no
    queries) one per row of z."""
    b, s, d = z.shape
    rows = "queries" not in t
    base = z if rows else t["queries"][None].expand(b, -1, -1)  # [B, N, d]
    n = base.shape[1]
    hd = d // heads
    q = (base @ t["attn_q"]).reshape(b, n, heads, hd).transpose(1, 2)  # [B, H, N, hd]
    keys = (z @ t["attn_k"]).reshape(b, s, heads, hd).transpose(1, 2)  # [B, H, S, hd]
    values = (z @ t["attn_v"]).reshape(b, s, heads, hd).transpose(1, 2)
    scores = (q @ keys.transpose(-1, -2)) / math.sqrt(hd)  # [B, H, N, S]
    scores = scores.masked_fill(~mask.bool()[:, None, None, :], float("-inf"))
    weights = torch.softmax(scores, -1).nan_to_num(0.0)  # a message with no real slot reads nothing
    read = (weights @ values).transpose(1, 2).reshape(b, n, d) @ t["attn_o"]
    h = base + read
    h = h + torch.nn.functional.gelu(rms_rows(h) @ t["mlp_in"] + t["mlp_in_bias"]) @ t["mlp_out"] + t["mlp_out_bias"]
    out_mask = mask.long() if rows else torch.ones((b, n), dtype=torch.long, device=z.device)
    return h, out_mask


def slot_vectors(h: torch.Tensor, t: dict) -> torch.Tensor:
    """[B, N, d] -> [B, N, P, D]: each row's P soft tokens before the output (P = 1 without
    per_row; slot 0 takes out_weight, slot k > 0 slot_out_weight[k - 1])."""
    r = rms_rows(h)
    y = (r @ t["out_weight"] + t["out_bias"])[:, :, None]
    if "slot_out_weight" in t:
        extra = torch.einsum("bnd,pde->bnpe", r, t["slot_out_weight"]) + t["slot_out_bias"]
        y = torch.cat([y, extra], dim=2)
    return y


def presence(h: torch.Tensor, t: dict) -> torch.Tensor | None:
    """[B, N, d] -> [B, N, P] logits that each slot is sent (None without per_row)."""
    return rms_rows(h) @ t["presence_weight"] + t["presence_bias"] if "presence_weight" in t else None


def output_tokens(y: torch.Tensor, t: dict, vocabulary: Vocabulary | None = None) -> torch.Tensor:
    """[B, N, ..., D] vectors -> the soft tokens: the vocabulary output where a vocabulary is
    given, else the free output (the receiver's norm, then the gate of each N, from t)."""
    if vocabulary is not None:
        return vocabulary.mix(y)
    y = y * (t["read_norm"] / y.norm(dim=-1, keepdim=True).clamp_min(1e-6))
    return torch.tanh(t["gate"]).reshape(1, -1, *[1] * (y.dim() - 2)) * y


def left_packed(soft: torch.Tensor, keep: torch.Tensor) -> tuple:
    """soft [B, M, D] with keep [B, M] -> ([B, L, D], [B, L]): each problem's kept soft
    tokens in order, left-padded to the most any problem keeps (as messages are)."""
    counts = keep.long().sum(-1)
    width = int(counts.max()) if keep.numel() else 0
    out = soft.new_zeros(soft.shape[0], width, soft.shape[-1])
    mask = torch.zeros(soft.shape[0], width, dtype=torch.long, device=soft.device)
    for b in range(soft.shape[0]):
        n = int(counts[b])
        if n:
            out[b, width - n:] = soft[b][keep[b].bool()]
            mask[b, width - n:] = 1
    return out, mask


def resample(z: torch.Tensor, mask: torch.Tensor, t: dict, heads: int, vocabulary: Vocabulary | None = None) -> tuple:
    """z [B, S, d] hub vectors with mask [B, S] -> ([B, N, D] soft tokens, [B, N] their mask).
    With per_row, each real row's slots whose presence logit is above 0, packed."""
    h, out_mask = read_message(z, mask, t, heads)
    y = slot_vectors(h, t)  # [B, N, P, D]
    sent = presence(h, t)
    keep = out_mask.bool()[:, :, None] & (sent > 0 if sent is not None else True)  # [B, N, P]
    if vocabulary is not None:  # only what is sent: each mixture reads the whole vocabulary (pads stay 0)
        soft = y.new_zeros(y.shape)
        soft[keep] = vocabulary.mix(y[keep])
    else:
        soft = output_tokens(y, t)
    if sent is None:
        return soft[:, :, 0], out_mask
    return left_packed(soft.flatten(1, 2), keep.flatten(1, 2))


def init_encoder(hidden: int, dim: int, generator: torch.Generator) -> dict:
    return {"encoder_weight": torch.randn(hidden, dim, generator=generator) / math.sqrt(hidden),
            "encoder_bias": torch.zeros(dim)}


def init_decoder(hidden: int, dim: int, tokens, read_norm: float, generator: torch.Generator,
                 output: str = "free", per_row: int | None = None) -> dict:
    """tokens: K learned queries, or ROWS (one soft token per message row); output: one of
    OUTPUTS; per_row (rows only): up to that many soft tokens per row, each sent where its
    presence logit is above 0 (initially slot 0 only)."""
    def w(i, o):
        return torch.randn(i, o, generator=generator) / math.sqrt(i)
    queries = {} if tokens == ROWS else {"queries": torch.randn(tokens, dim, generator=generator)}
    slots = {}
    if per_row:
        slots = {"presence_weight": torch.zeros(dim, per_row),
                 "presence_bias": torch.tensor([INIT_PRESENCE] + [-INIT_PRESENCE] * (per_row - 1))}
        if per_row > 1:
            slots.update(slot_out_weight=torch.stack([w(dim, hidden) for _ in range(per_row - 1)]),
                         slot_out_bias=torch.zeros(per_row - 1, hidden))
    return {**queries, "attn_q": w(dim, dim), "attn_k": w(dim, dim),
            "attn_v": w(dim, dim), "attn_o": w(dim, dim), "mlp_in": w(dim, 2 * dim),
            "mlp_in_bias": torch.zeros(2 * dim),
            "mlp_out": w(2 * dim, dim) * 0.1, "mlp_out_bias": torch.zeros(dim), "out_weight": w(dim, hidden),
            "out_bias": torch.zeros(hidden), **slots,
            **({} if output == "vocabulary" else
               {"gate": torch.full((1 if tokens == ROWS else tokens,), INIT_GATE),
                "read_norm": torch.tensor([float(read_norm)])})}


class ResamplerEncoder(Encoder):
    def __init__(self, tensors: dict, space: str, layer="last"):
        keys = ENCODER_KEYS + (STANDARDISE if "in_mean" in tensors else ())
        self.tensors, self.space, self.layer = {k: tensors[k].float() for k in keys}, space, layer

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return encode_rows(x, {k: v.to(x.device) for k, v in self.tensors.items()})


class ResamplerDecoder(Decoder):
    """Reads a whole message at once (`decode_set`), not row by row."""
    realign_after = False

    def __init__(self, tensors: dict, space: str, heads: int, vocabulary: Vocabulary | None = None):
        keys = (DECODER_KEYS + tuple(k for k in ("queries",) + SLOT_KEYS if k in tensors)
                + (() if vocabulary is not None else FREE_KEYS))
        self.tensors, self.space, self.heads = {k: tensors[k].float() for k in keys}, space, heads
        self.vocabulary = vocabulary
        self.in_dim = self.tensors["attn_k"].shape[0]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """One vector read as a one-slot message: its soft tokens' mean (used only to probe shapes)."""
        return self.decode_set(x[None], torch.ones(1, x.shape[0], dtype=torch.long))[0].mean(1)

    def decode_set(self, wire: torch.Tensor, mask: torch.Tensor) -> tuple:
        t = {k: v.to(wire.device) for k, v in self.tensors.items()}
        return resample(wire.float(), mask.to(wire.device), t, self.heads, self.vocabulary)


class Resampler(SharedSpaceCodec):
    key = "resampler"
    trained = True  # parts come from `latentray train-codec`, not from fit-codec's closed form
    readings = ("mixture", "nearest")  # vocabulary soft tokens as mixtures, or as their likeliest token

    def encode_part(self, src: str, dst: str) -> str:
        return f"{self.key}-enc--{model_slug(src)}"

    def decode_part(self, src: str, dst: str) -> str:
        return f"{self.key}-dec--{model_slug(dst)}"

    def fit(self, states: dict, edges: list) -> list:
        raise CodecError("the resampler codec is trained, not fitted: run `latentray train-codec SPEC --out DIR`")

    def init_parts(self, models: dict, embed_norms: dict, seed: int, layer="last", statistics=None) -> list:
        """Untrained parts (an encoder and a decoder per model) for {ref: fingerprint}, reading
        the senders' `layer` states ("last", or a decoder layer counted from 1); statistics:
        {ref: state_statistics of that model's sent states}, for the models that send."""
        dim = int(self.options.get("dim") or DEFAULT_DIM)
        tokens = self.options.get("tokens") or DEFAULT_TOKENS
        heads = int(self.options.get("heads") or DEFAULT_HEADS)
        output = self.options.get("output") or "free"
        if output not in OUTPUTS:
            raise CodecError(f"resampler: output {output!r} is not one of {', '.join(OUTPUTS)}")
        try:
            sharpness = float(self.options.get("sharpness") or DEFAULT_SHARPNESS)
        except ValueError:
            raise CodecError(f"resampler: sharpness {self.options.get('sharpness')!r} is not a number") from None
        if not sharpness > 0 or (self.options.get("sharpness") is not None and output != "vocabulary"):
            raise CodecError(f"resampler: sharpness {self.options.get('sharpness')} applies to output vocabulary "
                             "only, and must be above 0")
        if dim % heads:
            raise CodecError(f"resampler: dim {dim} must be a multiple of heads {heads}")
        top_k = self._whole_number("top_k")
        if top_k is not None and (top_k < 1 or output != "vocabulary"):
            raise CodecError(f"resampler: top_k {top_k} applies to output vocabulary only, and must be 1 or more")
        per_row = self._whole_number("per_row")
        if per_row is not None and (per_row < 1 or str(tokens) != ROWS):
            raise CodecError(f"resampler: per_row {per_row} needs tokens rows and a number of 1 or more")
        if tokens != ROWS:
            try:
                tokens = int(tokens)
            except ValueError:
                raise CodecError(f"resampler: tokens {tokens!r} is neither a number of soft tokens nor rows") from None
            if tokens < 1:
                raise CodecError(f"resampler: tokens {tokens} must be at least 1 (or rows)")
        g = torch.Generator().manual_seed(seed)
        options = {"dim": dim, "tokens": tokens, "heads": heads, "output": output,
                   **({"sharpness": sharpness} if output == "vocabulary" else {}),
                   **({"top_k": top_k} if top_k else {}),
                   **({"per_row": per_row} if per_row else {})}
        parts = []
        for ref, fp in models.items():
            hidden = int(fp["hidden_size"])
            entry = {"model": model_entry(ref, fp)}
            stats = {k: v.detach().float().clone() for k, v in (statistics or {}).get(ref, {}).items()}
            parts.append(Part(self.encode_part(ref, ref), {**init_encoder(hidden, dim, g), **stats},
                              {"codec": self.key, "trained": True, "side": "encode", "models": entry, "layers": layer,
                               "options": options}))
            parts.append(Part(self.decode_part(ref, ref), init_decoder(hidden, dim, tokens, embed_norms[ref], g,
                                                                       output, per_row),
                              {"codec": self.key, "trained": True, "side": "decode", "models": entry, "layers": layer,
                               "options": options}))
        return parts

    def _whole_number(self, key: str) -> int | None:
        """Option `key` as an int (None where not given), or a refusal naming it."""
        value = self.options.get(key)
        try:
            return None if value is None else int(value)
        except ValueError:
            raise CodecError(f"resampler: {key} {value!r} is not a number") from None

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
        return ResamplerEncoder(part.tensors, part.meta["space"], part.meta.get("layers", "last"))

    def decoder(self, part: Part, receiver: Receiver) -> Decoder:
        self._check_side(part, "decode")
        options = part.meta["options"]
        vocabulary = None
        if options.get("output", "free") == "vocabulary":
            if receiver is None or receiver.embeddings is None:
                raise CodecError(f"part {part.name!r} reads the receiver's vocabulary (output vocabulary): its decoder "
                                 "needs the receiving model's embedding module")
            vocabulary = Vocabulary(receiver.embeddings, float(options.get("sharpness", DEFAULT_SHARPNESS)),
                                    options.get("top_k"))
        if self.options.get("read", "mixture") == "nearest":
            if vocabulary is None:
                raise CodecError(f"part {part.name!r} has output {options.get('output', 'free')}: codec_read nearest "
                                 "reads soft tokens that are distributions over the receiver's vocabulary; train "
                                 "the parts with --output vocabulary, or leave channels.codec_read at mixture")
            vocabulary = vocabulary.reading(vocabulary.sharpness, top_k=1)  # the one most likely token
        return ResamplerDecoder(part.tensors, part.meta["space"], int(options["heads"]), vocabulary)

    def _check_side(self, part: Part, side: str) -> None:
        if part.meta.get("side") != side or "space" not in part.meta:
            raise CodecError(f"part {part.name!r} is not a trained resampler {side}r; train it with "
                             "`latentray train-codec SPEC --out DIR`")
