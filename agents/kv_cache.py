"""Reading any transformers cache's layers as (keys, values) pairs."""
from __future__ import annotations


def cache_layers(cache) -> list:
    """[(K, V), ...] per layer, whatever cache class the model returned."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return [(k, v) for k, v in cache]
