"""A model's fingerprint: what two agents must share for a `kv` message to be valid.

KV caches are only meaningful between identical weights, so besides the geometry
(layers, KV heads, head dim, RoPE) the fingerprint carries a tokenizer hash and a
weights hash. The weights hash samples each parameter (shape + first/last 4 KiB)
so it stays cheap for billion-parameter models.
"""
from __future__ import annotations

import hashlib
import json

import torch

from .model_config import text_config

_SAMPLE_BYTES = 4096


def _tensor_sample(t: torch.Tensor) -> bytes:
    flat = t.detach().reshape(-1)
    n = max(1, _SAMPLE_BYTES // flat.element_size())
    head, tail = flat[:n], flat[-n:]
    raw = torch.cat([head, tail]).cpu().contiguous()
    return raw.view(torch.uint8).numpy().tobytes()


def weights_hash(model) -> str:
    h = hashlib.blake2b(digest_size=12)
    for name, p in model.named_parameters():
        h.update(name.encode())
        h.update(str(tuple(p.shape)).encode())
        h.update(_tensor_sample(p))
    return h.hexdigest()


def tokenizer_hash(tokenizer) -> str:
    vocab = sorted(tokenizer.get_vocab().items())
    return hashlib.blake2b(json.dumps(vocab).encode(), digest_size=12).hexdigest()


def rope_params(config) -> dict:
    """RoPE settings as plain data; {} for architectures without RoPE (GPT-2)."""
    params = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    out = {k: v for k, v in dict(params).items() if isinstance(v, (int, float, str, bool))}
    theta = getattr(config, "rope_theta", None)
    if theta is not None:
        out.setdefault("rope_theta", theta)
    if not out and getattr(config, "model_type", "") in ("gpt2",):
        return {}
    return out


def model_fingerprint(model, tokenizer) -> dict:
    text_cfg = text_config(model)
    heads = text_cfg.num_attention_heads
    hidden = text_cfg.hidden_size
    return {
        "architecture": type(model).__name__,
        "hidden_size": hidden,
        "num_layers": text_cfg.num_hidden_layers,
        "num_kv_heads": getattr(text_cfg, "num_key_value_heads", None) or heads,
        "head_dim": getattr(text_cfg, "head_dim", None) or hidden // heads,
        "rope": rope_params(text_cfg),
        "vocab_size": text_cfg.vocab_size,
        "tokenizer_hash": tokenizer_hash(tokenizer),
        "weights_hash": weights_hash(model),
    }

