"""Count the bytes that data-movement operators write, to measure copies of a working memory.

A torch dispatch mode sees every aten operator a block of code runs. A copy of a KV
memory is a result of an operator that moves data (cat, stack, copy_, clone, to, index,
mul into an out tensor) spanning at least the memory's slots on the slot axis (-2 of
[..., T, D]); a forward's work on its new slots (a prompt, one latent step, one token) is
shorter and not counted. `bytes / memory bytes` is the number of full copies. What the
attention kernel does inside (e.g. repeating key heads for grouped-query attention) is
the model's, not a hop's, and is not one of these operators. Used by
benchmarks/chain_cost.py and the copy-count tests.
"""
from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

MOVES = frozenset({torch.ops.aten.cat.default, torch.ops.aten.stack.default, torch.ops.aten.copy_.default,
                   torch.ops.aten.clone.default, torch.ops.aten._to_copy.default, torch.ops.aten.mul.out,
                   torch.ops.aten.index.Tensor, torch.ops.aten.index_select.default})


class MovedBytes(TorchDispatchMode):
    def __init__(self, min_slots: int):
        super().__init__()
        self.min_slots, self.bytes, self.ops = min_slots, 0, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in MOVES:
            target = kwargs.get("out", args[0] if func is torch.ops.aten.copy_.default else out)
            if isinstance(target, torch.Tensor) and target.dim() >= 2 and target.shape[-2] >= self.min_slots:
                self.bytes += target.numel() * target.element_size()
                self.ops.append((str(func), tuple(target.shape)))
        return out


def kv_bytes(msg) -> int:
    """Bytes of a kv message's keys and values (what one copy of its memory moves)."""
    return sum(msg.tensors[k].numel() * msg.tensors[k].element_size() for k in ("keys", "values"))


def memory_slots(msg) -> int:
    """Slots of a kv message's memory (its T)."""
    return int(msg.header.shapes["keys"][3])
