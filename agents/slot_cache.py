"""A KV cache that grows in place: every layer's keys and values live in buffers allocated
once with room for the slots to come, and each forward writes its new slots into them.

transformers' DynamicCache concatenates a layer's whole cache with every new slot, so each
latent step and each decoded token copies the entire working memory once per layer. Here
an agent reserves, at prefill, room for its prompt, its latent steps and the tokens it
may decode; the memory it received is copied into the buffers once (that is the one copy
of a KV hop on the receiving side) and nothing is copied again unless the reserve runs out
(then the buffers double). Attention reads views of the filled part.

The cache keeps every slot of every layer (the attention masks apply sliding windows, see
forward.py), like the DynamicCache it replaces.
"""
from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicLayer


class SlotLayer(DynamicLayer):
    """One layer: buffers [B, H, capacity, D]; `keys`/`values` are views of the filled slots."""

    def __init__(self, capacity: int = 0):
        super().__init__()
        self.capacity = capacity
        self.length = 0
        self._k = self._v = None

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        b, h, s, d = key_states.shape
        cap = max(self.capacity, s)
        self._k = key_states.new_empty((b, h, cap, d))
        self._v = value_states.new_empty((b, h, cap, value_states.shape[-1]))
        self.is_initialized = True

    def _refresh(self) -> None:
        self.keys, self.values = self._k[:, :, :self.length], self._v[:, :, :self.length]

    def _reserve(self, total: int) -> None:
        cap = self._k.shape[2]
        if total <= cap:
            return
        cap = max(total, 2 * cap)  # the reserve ran out: grow geometrically, copy once
        k, v = self._k, self._v
        self._k = k.new_empty((k.shape[0], k.shape[1], cap, k.shape[3]))
        self._v = v.new_empty((v.shape[0], v.shape[1], cap, v.shape[3]))
        self._k[:, :, :self.length].copy_(k[:, :, :self.length])
        self._v[:, :, :self.length].copy_(v[:, :, :self.length])

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs) -> tuple:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n, s = self.length, key_states.shape[-2]
        self._reserve(n + s)
        self._k[:, :, n:n + s].copy_(key_states)
        self._v[:, :, n:n + s].copy_(value_states)
        self.length = n + s
        self._refresh()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            self._k, self._v = self._k[indices], self._v[indices]
            self._refresh()

    def crop(self, tokens_to_remove: int) -> None:
        """Forget the last -tokens_to_remove slots (transformers' convention: a negative count)."""
        if tokens_to_remove > 0:
            raise ValueError(f"crop takes a negative count of slots to remove, got {tokens_to_remove}")
        if self.is_initialized and tokens_to_remove:
            self.length = max(self.length + tokens_to_remove, 0)
            self._refresh()

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.is_initialized:
            self._k = self._k.repeat_interleave(repeats, dim=0)
            self._v = self._v.repeat_interleave(repeats, dim=0)
            self._refresh()


class SlotCache(Cache):
    def __init__(self, num_layers: int, capacity: int):
        super().__init__(layers=[SlotLayer(capacity) for _ in range(num_layers)])

    @classmethod
    def from_parts(cls, parts: list, reserve: int, device=None) -> "SlotCache":
        """A cache holding the memory that `parts` ([(keys [L,B,H,T,D], values), ...] in slot
        order) make together, with room for `reserve` more slots, on `device`. Each part is
        copied into the buffers once (straight from host to device memory on a GPU); the parts
        themselves (read-only store memory) are never written."""
        keys0, values0 = parts[0]
        total = sum(k.shape[3] for k, _ in parts)
        cache = cls(keys0.shape[0], total + reserve)
        device = keys0.device if device is None else torch.device(device)
        for i, layer in enumerate(cache.layers):
            layer.lazy_initialization(keys0[i][:, :, :0].to(device), values0[i][:, :, :0].to(device))
            for keys, values in parts:
                layer.update(keys[i], values[i])
        return cache

    def stacked(self, start: int = 0, keep: torch.Tensor | None = None) -> tuple:
        """Keys and values of every layer from slot `start` on, as new tensors [L, B, H, T, D]:
        one gather per tensor; `keep` [B, T] (0 at pad slots) zeroes pads while gathering."""
        layers = self.layers
        n = layers[0].length - start
        k0, v0 = layers[0]._k, layers[0]._v
        keys = k0.new_empty((len(layers), k0.shape[0], k0.shape[1], n, k0.shape[3]))
        values = v0.new_empty((len(layers), v0.shape[0], v0.shape[1], n, v0.shape[3]))
        scale = None if keep is None else keep[:, None, :, None].to(k0.dtype)
        for i, layer in enumerate(layers):
            src_k, src_v = layer._k[:, :, start:layer.length], layer._v[:, :, start:layer.length]
            if scale is None:
                keys[i].copy_(src_k)
                values[i].copy_(src_v)
            else:
                torch.mul(src_k, scale, out=keys[i])
                torch.mul(src_v, scale, out=values[i])
        return keys, values
