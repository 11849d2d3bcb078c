"""Tensors that are dense in memory but not in their own dimension order travel as they lie.

A view such as a slot-major cache's keys (slot_cache.py: [T, L, B, H, D] in memory, seen as
[L, B, H, T, D]) is not contiguous, and a store that takes only contiguous buffers would
copy it. Yet its elements fill one block of memory with no gaps: permuted into the order
they lie in, it is contiguous. The sender stores that permuted view (no copy) and records
the permutation; the receiver permutes back (no copy). The order a tensor is stored in is
transport bookkeeping: the message's shapes stay the logical ones.
"""
from __future__ import annotations

import torch

KEY = "memory_order"  # header.extra entry while in transit: {tensor name: dims, outermost first}


def dense_order(t: torch.Tensor) -> list | None:
    """The permutation of t's dims (outermost in memory first) under which it is contiguous,
    or None when its elements do not fill one block (a slice with gaps, an expanded view)."""
    order = sorted(range(t.dim()), key=lambda d: (-t.stride(d), -t.shape[d]))
    return order if t.permute(order).is_contiguous() else None


def as_stored(t: torch.Tensor) -> tuple:
    """(a contiguous tensor holding t's elements, the order to undo or None): t itself when
    contiguous, its permuted view when dense in another order (no copy), else a copy."""
    if t.is_contiguous():
        return t, None
    order = dense_order(t)
    if order is None:
        return t.contiguous(), None
    return t.permute(order), order


def inverse(order: list) -> list:
    out = [0] * len(order)
    for i, d in enumerate(order):
        out[d] = i
    return out


def check_order(order, ndim: int) -> str | None:
    """Why `order` is not a permutation of a tensor's `ndim` dims, or None when it is."""
    if not (isinstance(order, list) and all(isinstance(d, int) and not isinstance(d, bool) for d in order)):
        return f"must be a list of dimension indices, got {order!r}"
    if sorted(order) != list(range(ndim)):
        return f"{order} is not a permutation of the tensor's {ndim} dimensions"
    return None


def to_transit(msg, prepare=lambda t: t):
    """`msg` with each tensor (after `prepare`: detach, move) contiguous as it lies in memory,
    and the orders to undo recorded in its header."""
    tensors, orders = {}, {}
    for name, t in msg.tensors.items():
        tensors[name], order = as_stored(prepare(t))
        if order is not None:
            orders[name] = order
    if all(tensors[k] is t for k, t in msg.tensors.items()):
        return msg
    extra = {**msg.header.extra, KEY: orders} if orders else msg.header.extra
    return msg.replace(tensors=tensors, extra=extra)


def from_transit(msg, transport: str):
    """The message `to_transit` made, with its tensors back in their logical order (views)."""
    from ..errors import TransportError

    extra = msg.header.extra
    orders = extra.get(KEY) if isinstance(extra, dict) else None
    if orders is None:
        return msg
    if not isinstance(orders, dict):
        raise TransportError(f"extra.{KEY} must map tensor names to dimension orders, got {type(orders).__name__}",
                             transport=transport, field=f"extra.{KEY}")
    tensors = dict(msg.tensors)
    for name, order in orders.items():
        if name not in tensors:
            raise TransportError(f"extra.{KEY} names tensor {name!r}, which the message does not carry",
                                 transport=transport, field=f"extra.{KEY}")
        why = check_order(order, tensors[name].dim())
        if why:
            raise TransportError(f"extra.{KEY}.{name} {why}", transport=transport, field=f"extra.{KEY}.{name}")
        tensors[name] = tensors[name].permute(inverse(order))
    return msg.replace(tensors=tensors, extra={k: v for k, v in extra.items() if k != KEY})
