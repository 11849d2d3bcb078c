"""Convert between a KV message's stacked tensors and a transformers cache object.

A kv message holds keys/values as [L, B, H, T, D]; the model wants one (K, V) pair per
layer. Slicing a stacked tensor is a view, so building the cache copies nothing, and
the cache's own appends (torch.cat) allocate new tensors: received memory is never
written.
"""
from __future__ import annotations

import torch
from transformers import DynamicCache


def cache_from_tensors(keys: torch.Tensor, values: torch.Tensor) -> DynamicCache:
    """A cache over every layer's slots. No model config on purpose: a config would turn
    sliding-window layers into caches that keep only the last window of slots."""
    pairs = [(keys[i], values[i]) for i in range(keys.shape[0])]
    return DynamicCache(ddp_cache_data=pairs)


def cache_layers(cache) -> list:
    """[(K, V), ...] per layer, whatever cache class the model returned."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return [(k, v) for k, v in cache]


def stack_cache(cache, start: int = 0) -> tuple:
    """Keys and values of every layer from slot `start` on, stacked to [L, B, H, T, D]."""
    layers = cache_layers(cache)
    keys = torch.stack([k[:, :, start:] for k, _ in layers])
    values = torch.stack([v[:, :, start:] for _, v in layers])
    return keys, values
