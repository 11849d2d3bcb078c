"""kv: the sender's working memory, per-layer keys and values, read as a cache prefix.

Tensors: keys, values [L, B, H_kv, T, D] (L = len(header.layers)); mask [B, T];
positions [B, T] (the RoPE position each cached slot was written at). A cache is used as
is, so only agents of one model (same weights, tokenizer and geometry) exchange it.
"""
from __future__ import annotations

from types import MappingProxyType

from latentray.channels.errors import FingerprintMismatchError

from .base import MEMORY, Arrival, MessageKind, check_mask_rows

# Order matters: the first differing field is the one named (geometry before hashes).
FINGERPRINT_FIELDS = ("architecture", "num_layers", "num_kv_heads", "head_dim", "hidden_size", "rope",
                      "vocab_size", "tokenizer_hash", "weights_hash")
# Compressions after which the payload arrives back in the receiver's model dtype.
DTYPE_RESTORING = ("int8", "bf16", "fp16")


class KvKind(MessageKind):
    name = "kv"
    tensors = ("keys", "values", "mask", "positions")
    seq_axis = MappingProxyType({"keys": 3, "values": 3, "mask": 1, "positions": 1})
    payload = ("keys", "values")
    index_tensors = ("mask", "positions")
    role = MEMORY
    same_model_only = True
    same_model_fix = "kv messages need one model on both ends; use kind hidden with a codec"
    layered = True
    rope_joined = True

    def validate(self, msg, arrival: Arrival) -> None:
        _check_dtype(msg, arrival)
        _check_geometry(msg, arrival)
        check_mask_rows(msg, arrival.fail)


def _check_dtype(msg, arrival: Arrival) -> None:
    if arrival.model_dtype is None:
        return
    restored = any(s.name in DTYPE_RESTORING for s in arrival.steps)
    arrives = arrival.model_dtype if restored else msg.tensors["keys"].dtype
    if arrives != arrival.model_dtype:
        arrival.fail("dtypes.keys", f"kv tensors are {arrives} but the receiver's model runs in "
                                    f"{arrival.model_dtype}; a kv cache is used as is, so run both agents in one dtype")


def _check_geometry(msg, arrival: Arrival) -> None:
    h, t, fail = msg.header, msg.tensors, arrival.fail
    keys, values, mask, positions = t["keys"], t["values"], t["mask"], t["positions"]
    if keys.ndim != 5:
        fail("keys", f"must be [L, B, H_kv, T, D], got {list(keys.shape)}")
    if values.shape != keys.shape:
        fail("values", f"shape {list(values.shape)} differs from keys {list(keys.shape)}")
    if list(keys.shape[1:2]) + list(keys.shape[3:4]) != list(mask.shape):
        fail("mask", f"shape {list(mask.shape)} does not match keys [B, T] = "
                     f"{[keys.shape[1], keys.shape[3]]}")
    if positions.shape != mask.shape:
        fail("positions", f"shape {list(positions.shape)} differs from mask {list(mask.shape)}")
    if bool((positions.long()[mask.bool()] < 0).any()):
        fail("positions", "real slots must have positions >= 0")
    check_fingerprint(h.fingerprint, arrival.fingerprint, fail)
    fp = h.fingerprint
    heads, dim, layers = fp.get("num_kv_heads"), fp.get("head_dim"), fp.get("num_layers")
    if (keys.shape[2], keys.shape[4]) != (heads, dim):
        fail("keys", f"[H_kv, D] = {[keys.shape[2], keys.shape[4]]} but the model has {[heads, dim]}")
    if len(h.layers) != keys.shape[0]:
        fail("layers", f"{len(h.layers)} layer indices for {keys.shape[0]} stacked layers")
    if not any(s.name.startswith("layers:") for s in arrival.steps) and tuple(h.layers) != tuple(range(layers)):
        fail("layers", f"a kv message must carry all {layers} layers in order, got {list(h.layers)}; "
                       "send a subset only through the layers:<i,j,...> compression")


def check_fingerprint(sent: dict, mine: dict | None, fail) -> None:
    """The sender's model must be the receiver's, field by field."""
    if mine is None:
        fail("fingerprint", "a kv message can only be checked against the receiver's fingerprint; pass it")
    differ = [f for f in FINGERPRINT_FIELDS if sent.get(f) != mine.get(f)]
    if differ:
        detail = "; ".join(f"{f}: sender {sent.get(f)!r}, receiver {mine.get(f)!r}" for f in differ)
        fail(f"fingerprint.{differ[0]}", f"kv messages need the same model on both ends ({detail}); "
                                         "use kind hidden with a codec between different models",
             FingerprintMismatchError)
