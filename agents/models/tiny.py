"""Small random-initialised models of real architectures, built from configs in code.

They exercise exactly the code paths of real checkpoints (same classes, same cache,
same RoPE, same quirks: Gemma's scaled embeddings and sliding windows, Granite's logit
scaling, SmolLM3's RoPE-free layers), but have random weights, a byte-level tokenizer
and < 2M parameters, so tests and offline runs need no download. Same preset + seed ->
same weights.
"""
from __future__ import annotations

import torch

from ..errors import ModelRefError
from .byte_tokenizer import IM_END, byte_level_tokenizer

# Each preset imports its own config class when it is built: importing every architecture
# up front cost each actor process about a second.

# Windows far shorter than a chained prompt, so every test crosses them.
TINY_WINDOW = 8


def _common(hidden: int, layers: int, tied: bool, vocab: int) -> dict:
    return dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                tie_word_embeddings=tied)


def _qwen3(hidden, layers, tied, vocab, special):
    from transformers import Qwen3Config

    return Qwen3Config(**_common(hidden, layers, tied, vocab), head_dim=hidden // 4, **special)


def _llama(hidden, layers, tied, vocab, special):
    from transformers import LlamaConfig

    return LlamaConfig(**_common(hidden, layers, tied, vocab), **special)


def _gpt2(hidden, layers, tied, vocab, special):
    from transformers import GPT2Config

    return GPT2Config(vocab_size=vocab, n_embd=hidden, n_layer=layers, n_head=4, n_positions=2048,
                      tie_word_embeddings=tied, **special)


def _gemma3(hidden, layers, tied, vocab, special):
    from transformers import Gemma3TextConfig

    # Gemma 3: embeddings scaled by sqrt(d) inside the embedding module, local (sliding)
    # layers with their own RoPE base between global ones, logit soft-capping.
    types = ["sliding_attention" if (i + 1) % 3 else "full_attention" for i in range(layers)]
    return Gemma3TextConfig(
        **_common(hidden, layers, tied, vocab), head_dim=hidden // 4, query_pre_attn_scalar=hidden // 4,
        sliding_window=TINY_WINDOW, layer_types=types, final_logit_softcapping=1.0,  # small, so tiny logits feel it
        rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
                         "full_attention": {"rope_type": "default", "rope_theta": 1_000_000.0}},
        **special)


def _mistral(hidden, layers, tied, vocab, special):
    from transformers import MistralConfig

    return MistralConfig(**_common(hidden, layers, tied, vocab), sliding_window=TINY_WINDOW, **special)


def _qwen2_sliding(hidden, layers, tied, vocab, special):
    from transformers import Qwen2Config

    # Qwen2 slides from layer max_window_layers on: a mix of full and sliding layers.
    return Qwen2Config(**_common(hidden, layers, tied, vocab), use_sliding_window=True,
                       sliding_window=TINY_WINDOW, max_window_layers=1, **special)


def _granite(hidden, layers, tied, vocab, special):
    from transformers import GraniteConfig

    # Granite divides logits by logits_scaling and multiplies embeddings inside the model.
    return GraniteConfig(**_common(hidden, layers, tied, vocab), logits_scaling=4.0, embedding_multiplier=6.0,
                         residual_multiplier=0.5, attention_multiplier=0.25, **special)


def _cohere(hidden, layers, tied, vocab, special):
    from transformers import CohereConfig

    return CohereConfig(**_common(hidden, layers, tied, vocab), logit_scale=0.25, **special)


def _smollm3(hidden, layers, tied, vocab, special):
    from transformers import SmolLM3Config

    # SmolLM3 leaves RoPE out of some layers (no_rope_layers[i] == 0).
    return SmolLM3Config(**_common(hidden, layers, tied, vocab), no_rope_layers=[1, 0, 1][:layers],
                         **special)


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
    "gemma3-64": (_gemma3, 64, 3, True),
    "mistral-64": (_mistral, 64, 2, False),
    "qwen2-64-sliding": (_qwen2_sliding, 64, 2, False),
    "granite-64": (_granite, 64, 2, False),
    "cohere-64": (_cohere, 64, 2, True),
    "smollm3-64": (_smollm3, 64, 3, False),
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
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    # The chat template ends a turn with <|im_end|>: a real instruct model's generation
    # config lists its end-of-turn token as a stop id the same way.
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(IM_END)]
    model.eval()
    return model, tokenizer
