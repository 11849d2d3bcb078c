"""A KV cache that grows in place: the keys and values of every layer live in one buffer
each, allocated once with room for the slots to come, and each forward writes its new
slots into it.

transformers' DynamicCache concatenates a layer's whole cache with every new slot, so each
latent step and each decoded token copies the entire working memory once per layer. Here
an agent reserves, at prefill, room for its prompt, its latent steps and the tokens it
may decode; the memory it received is copied into the buffers once (that is the one copy
of a KV hop) and nothing is copied again unless the reserve runs out (then the buffers
double). Attention reads views of the filled part.

Two layouts of the same buffer, chosen by what the agent does with its memory:
  heads  [L, B, H, capacity, D]: each (row, head)'s slots lie together, the order attention
         reads them in; for an agent that decodes (long contexts, many forwards).
  slots  [capacity, L, B, H, D]: a run of slots across every layer is one block of memory,
         so a message of those slots is a view of the cache and goes into the object store
         as it is (no gather); for an agent that sends its memory on. Attention reads it
         with a stride of a whole slot, slower at long contexts on a CPU.
Either way a message's keys are [L, B, H, T, D] (channels/message.py), here a view.

The cache keeps every slot of every layer (the attention masks apply sliding windows, see
forward.py), like the DynamicCache it replaces.
"""
from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicLayer

LAYOUTS = ("heads", "slots")


class SlotLayer(DynamicLayer):
    """One layer of a SlotCache: `keys`/`values` [B, H, length, D] are views of its buffers."""

    def __init__(self, cache: "SlotCache", index: int):
        super().__init__()
        self.cache, self.index, self.length = cache, index, 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        self.cache._allocate(key_states, value_states)
        self.is_initialized = True

    def _refresh(self) -> None:
        if self.is_initialized:
            self.keys = self.cache._view(self.cache.k, self.index, 0, self.length)
            self.values = self.cache._view(self.cache.v, self.index, 0, self.length)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs) -> tuple:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n, s = self.length, key_states.shape[-2]
        self.cache._reserve(n + s)
        self.cache._view(self.cache.k, self.index, n, n + s).copy_(key_states)
        self.cache._view(self.cache.v, self.index, n, n + s).copy_(value_states)
        self.length = n + s
        self._refresh()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def crop(self, tokens_to_remove: int) -> None:
        """Forget the last -tokens_to_remove slots (transformers' convention: a negative count)."""
        if tokens_to_remove > 0:
            raise ValueError(f"crop takes a negative count of slots to remove, got {tokens_to_remove}")
        if self.is_initialized and tokens_to_remove:
            self.length = max(self.length + tokens_to_remove, 0)
            self._refresh()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        raise NotImplementedError("rows are selected for every layer at once: SlotCache.batch_select_indices")

    def batch_repeat_interleave(self, repeats: int) -> None:
        raise NotImplementedError("rows are repeated for every layer at once: SlotCache.batch_repeat_interleave")


class SlotCache(Cache):
    def __init__(self, num_layers: int, capacity: int, layout: str = "heads"):
        if layout not in LAYOUTS:
            raise ValueError(f"unknown cache layout {layout!r}; use one of {LAYOUTS}")
        self.layout, self.capacity, self.k, self.v = layout, capacity, None, None
        super().__init__(layers=[SlotLayer(self, i) for i in range(num_layers)])

    # ---- the layout ------------------------------------------------------------------
    @property
    def row_axis(self) -> int:
        return 1 if self.layout == "heads" else 2

    def _shape(self, b: int, h: int, cap: int, d: int) -> tuple:
        n = len(self.layers)
        return (n, b, h, cap, d) if self.layout == "heads" else (cap, n, b, h, d)

    def _view(self, buf: torch.Tensor, layer: int, start: int, end: int) -> torch.Tensor:
        """Layer `layer`'s slots start..end of `buf`, as [B, H, T, D]."""
        if self.layout == "heads":
            return buf[layer, :, :, start:end]
        return buf[start:end, layer].permute(1, 2, 0, 3)

    def _span(self, buf: torch.Tensor, start: int, end: int) -> torch.Tensor:
        """Slots start..end of every layer of `buf`, as [L, B, H, T, D]."""
        if self.layout == "heads":
            return buf[:, :, :, start:end]
        return buf[start:end].permute(1, 2, 3, 0, 4)

    # ---- buffers ---------------------------------------------------------------------
    def _allocate(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        b, h, s, d = key_states.shape
        if self.k is None:
            cap = max(self.capacity, s)
            self.k = key_states.new_empty(self._shape(b, h, cap, d))
            self.v = value_states.new_empty(self._shape(b, value_states.shape[1], cap, value_states.shape[-1]))
            return
        want = self._view(self.k, 0, 0, 0).shape
        if (want[0], want[1], want[3]) != (b, h, d) or self.k.dtype != key_states.dtype:
            raise ValueError(f"layer states {tuple(key_states.shape)} {key_states.dtype} do not match the cache's "
                             f"[{want[0]}, {want[1]}, T, {want[3]}] {self.k.dtype}: every layer must share one shape")

    def _capacity(self) -> int:
        return self.k.shape[3] if self.layout == "heads" else self.k.shape[0]

    def _reserve(self, total: int) -> None:
        cap = self._capacity()
        if total <= cap:
            return
        cap = max(total, 2 * cap)  # the reserve ran out: grow geometrically, copy once
        filled = max(layer.length for layer in self.layers)
        k, v = self.k, self.v
        kb, kh, _, kd = self._view(k, 0, 0, 0).shape
        vb, vh, _, vd = self._view(v, 0, 0, 0).shape
        self.k, self.v = k.new_empty(self._shape(kb, kh, cap, kd)), v.new_empty(self._shape(vb, vh, cap, vd))
        self._span(self.k, 0, filled).copy_(self._span(k, 0, filled))
        self._span(self.v, 0, filled).copy_(self._span(v, 0, filled))
        self._refresh()

    def _refresh(self) -> None:
        for layer in self.layers:
            layer._refresh()

    # ---- rows ------------------------------------------------------------------------
    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep only rows `indices` (in that order), in every layer."""
        if self.k is not None:
            self.k, self.v = self.k.index_select(self.row_axis, indices), self.v.index_select(self.row_axis, indices)
            self._refresh()

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.k is not None:
            self.k = self.k.repeat_interleave(repeats, dim=self.row_axis)
            self.v = self.v.repeat_interleave(repeats, dim=self.row_axis)
            self._refresh()

    # ---- building and sending --------------------------------------------------------
    @classmethod
    def from_parts(cls, parts: list, reserve: int, device=None, layout: str = "heads") -> "SlotCache":
        """A cache holding the memory that `parts` ([(keys [L,B,H,T,D], values), ...] in slot
        order) make together, with room for `reserve` more slots, on `device`. Each part is
        copied into the buffers once (straight from host to device memory on a GPU; one
        block copy when both are in the slots layout); the parts themselves (read-only
        store memory) are never written."""
        keys0, values0 = parts[0]
        total = sum(k.shape[3] for k, _ in parts)
        cache = cls(keys0.shape[0], total + reserve, layout)
        device = keys0.device if device is None else torch.device(device)
        cache._allocate(keys0[0][:, :, :0].to(device), values0[0][:, :, :0].to(device))
        cache.append_parts(parts)
        return cache

    @torch.inference_mode()  # the buffers may have been made by a forward, in inference mode
    def append_parts(self, parts: list) -> None:
        """Copy `parts` ([(keys [L,B,H,T,D], values), ...] in slot order) after the slots
        the cache holds, each once; the parts themselves are never written."""
        n = self.layers[0].length
        self._reserve(n + sum(k.shape[3] for k, _ in parts))
        for keys, values in parts:
            t = keys.shape[3]
            self._span(self.k, n, n + t).copy_(keys)
            self._span(self.v, n, n + t).copy_(values)
            n += t
        for layer in self.layers:
            layer.dtype, layer.device, layer.is_initialized, layer.length = self.k.dtype, self.k.device, True, n
        self._refresh()

    def memory(self, start: int = 0) -> tuple:
        """Keys and values of every layer from slot `start` on, [L, B, H, T, D]: views of the
        buffers, no copy (in the slots layout, contiguous blocks of memory)."""
        n = self.layers[0].length
        return self._span(self.k, start, n), self._span(self.v, start, n)

    @torch.inference_mode()
    def zero_pads(self, start: int, mask: torch.Tensor) -> None:
        """Write zeros into the pad slots (0 in `mask` [B, T], slots start.. on) of every
        layer, in place: a pad slot holds whatever padding produced, and no real query ever
        reads it again, so a message then depends only on its real content. Writes the pads
        only."""
        rows, slots = (mask == 0).nonzero(as_tuple=True)
        if rows.numel() == 0:
            return
        slots = slots + start
        for buf in (self.k, self.v):
            if self.layout == "heads":
                buf[:, rows, :, slots] = 0
            else:
                buf[slots, :, rows] = 0
