"""Small random-initialised models of real architectures, built from configs in code.

They exercise exactly the code paths of real checkpoints (same classes, same cache,
same RoPE), but have random weights, a byte-level tokenizer and < 2M parameters,
so tests and offline runs need no download. Same preset + seed -> same weights.
"""
from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, Qwen3Config

from .errors import ModelRefError
from .tokenizer import byte_level_tokenizer


def _qwen3(hidden: int, layers: int, tied: bool, vocab: int, special: dict) -> Qwen3Config:
    return Qwen3Config(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 2,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        head_dim=hidden // 4, max_position_embeddings=2048, tie_word_embeddings=tied,
        **special,
    )


def _llama(hidden: int, layers: int, tied: bool, vocab: int, special: dict) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 2,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=2048, tie_word_embeddings=tied, **special,
    )


def _gpt2(hidden: int, layers: int, tied: bool, vocab: int, special: dict) -> GPT2Config:
    return GPT2Config(
        vocab_size=vocab, n_embd=hidden, n_layer=layers, n_head=4, n_positions=2048,
        tie_word_embeddings=tied, **special,
    )


INIT_RANGE = 0.05

# name -> (config builder, hidden size, layers, tied embeddings)
PRESETS = {
    "qwen3-64": (_qwen3, 64, 2, False),
    "qwen3-128": (_qwen3, 128, 3, False),
    "qwen3-64-tied": (_qwen3, 64, 2, True),
    "llama-64": (_llama, 64, 2, False),
    "llama-128": (_llama, 128, 3, False),
    "gpt2-64": (_gpt2, 64, 2, True),
    "gpt2-128": (_gpt2, 128, 3, True),
}


def build_tiny(preset: str, seed: int = 0, dtype: torch.dtype = torch.float32):
    """Return (model, tokenizer) for a preset; raises ModelRefError naming the presets."""
    if preset not in PRESETS:
        raise ModelRefError(
            f"unknown tiny model preset {preset!r}; use one of: {', '.join(sorted(PRESETS))}"
        )
    builder, hidden, layers, tied = PRESETS[preset]
    tokenizer = byte_level_tokenizer()
    special = dict(
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    # A 260-token vocabulary gives W_outᵀW_out a far smaller scale than a real 150K
    # vocabulary; a wider init keeps the ridge term's relative size close to real models.
    special["initializer_range"] = INIT_RANGE
    config = builder(hidden, layers, tied, len(tokenizer), special)
    # A private RNG so building a model never disturbs (or depends on) the caller's.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.eval()
    return model, tokenizer
