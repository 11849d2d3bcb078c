"""Check a latent message on arrival, before any of it reaches the model.

`validate_message` reads the message as it arrived (compressed or not) and raises a
MessageError naming sender, receiver and the offending field; it never changes the
message. Checks: the header agrees with the tensors (names, shapes, dtypes, rows,
sequence lengths, layers), kv geometry and fingerprint match the receiver, latents have
the receiver's hidden size, every float is finite, and dtypes are ones the receiver
handles. What a recorded compression added (scales, sinks) is checked by that step.
"""
from __future__ import annotations

import torch

from .compression import check_compression_names
from .compression.base import PAYLOAD, RECORD
from .errors import FingerprintMismatchError, MessageError
from .message import KINDS, TENSOR_NAMES, LatentMessage, header_mismatch

FLOAT_DTYPES = ("float32", "bfloat16", "float16")
INDEX_DTYPES = ("int64", "int32", "int16", "int8", "uint8", "bool")
# Order matters: the first differing field is the one named (geometry before hashes).
FINGERPRINT_FIELDS = ("architecture", "num_layers", "num_kv_heads", "head_dim", "hidden_size", "rope",
                      "vocab_size", "tokenizer_hash", "weights_hash")


def validate_message(msg: LatentMessage, *, receiver: str, receiver_fingerprint: dict | None,
                     edge_kind: str | None = None, model_dtype: torch.dtype | None = None,
                     soft_dim="receiver") -> None:
    """Raise MessageError if `msg` cannot be used by `receiver`; return None if it can.

    receiver_fingerprint: the receiver's model fingerprint (required for kv; used for
    the hidden size of hidden/embeds). edge_kind: the kind the channel declares.
    model_dtype: the receiver's model dtype; a kv payload must end up in it.
    soft_dim: the vector size a hidden/embeds message must have on the wire: the edge
    codec's input size; "receiver" (default) = the receiver's hidden size; None = any.
    """
    h = msg.header

    def fail(field: str, text: str, error=MessageError):
        raise error(text, sender=h.sender, receiver=receiver, field=field)

    _check_header_types(msg, fail)
    if h.kind not in KINDS:
        fail("kind", f"unknown kind {h.kind!r}; expected one of {KINDS}")
    if edge_kind is not None and h.kind != edge_kind:
        fail("kind", f"the channel carries {edge_kind!r} messages but this one is {h.kind!r}")
    steps = _steps(msg, fail)
    _check_envelope(msg, steps, fail)
    _check_dtypes(msg, steps, model_dtype, fail)
    _check_finite(msg, fail)
    if h.kind == "text":
        _check_text(msg, fail)
        return
    if h.kind == "kv":
        _check_kv(msg, steps, receiver_fingerprint, fail)
    else:
        hidden = (receiver_fingerprint or {}).get("hidden_size") if soft_dim == "receiver" else soft_dim
        _check_soft(msg, hidden, fail)
    _check_rows(msg, fail)
    for step in steps:
        step.check(msg, fail)


# A header comes off the wire as plain data; each field must have its type before any
# check reads it, so a malformed one is named here and not met as a TypeError later.
HEADER_TYPES = {"kind": str, "sender": str, "fingerprint": dict, "shapes": dict, "dtypes": dict,
                "layers": (tuple, list), "seq_lens": (tuple, list), "latent_steps": int, "latent_slots": int,
                "trace_id": str, "texts": (tuple, list), "extra": dict}
INT_LISTS = ("layers", "seq_lens")


def _check_header_types(msg, fail) -> None:
    if not isinstance(msg.tensors, dict):
        fail("tensors", f"must map tensor names to tensors, got a {type(msg.tensors).__name__}")
    for name, kind in HEADER_TYPES.items():
        value = getattr(msg.header, name)
        if not isinstance(value, kind) or isinstance(value, bool):
            fail(name, f"header field has type {type(value).__name__}; the sender must write "
                       f"{kind.__name__ if isinstance(kind, type) else 'a list'}")
    for name in INT_LISTS:
        bad = [v for v in getattr(msg.header, name) if not isinstance(v, int) or isinstance(v, bool)]
        if bad:
            fail(name, f"holds {bad[0]!r}; it must list integers")


def _steps(msg, fail) -> list:
    names = msg.header.extra.get(RECORD, [])
    if not isinstance(names, list):
        fail(f"extra.{RECORD}", f"must be a list of compression names, got {names!r}")
    try:
        return check_compression_names(names)
    except ValueError as e:
        fail(f"extra.{RECORD}", str(e))


def _check_envelope(msg, steps, fail) -> None:
    h, tensors = msg.header, msg.tensors
    expected = set(TENSOR_NAMES[h.kind])
    for step in steps:
        expected |= set(step.added_tensors(msg))
    for name in sorted(expected - set(tensors)):
        fail(name, f"a {h.kind} message needs tensor {name!r}; it is missing")
    for name in sorted(set(tensors) - expected):
        fail(name, f"unexpected tensor {name!r} in a {h.kind} message (expected {sorted(expected)})")
    mismatch = header_mismatch(msg)
    if mismatch:
        fail(*mismatch)


def _check_dtypes(msg, steps, model_dtype, fail) -> None:
    quantised = any(s.name == "int8" for s in steps)
    payload = PAYLOAD[msg.kind]
    for name, t in msg.tensors.items():
        dtype = str(t.dtype).removeprefix("torch.")
        if name in ("mask", "positions"):
            if dtype not in INDEX_DTYPES:
                fail(f"dtypes.{name}", f"{dtype}; {name} must be an integer or bool tensor")
        elif name in payload and quantised:
            continue  # int8 checks its own payload and scales
        elif dtype not in FLOAT_DTYPES:
            fail(f"dtypes.{name}", f"{dtype} is not a float type the receiver handles ({', '.join(FLOAT_DTYPES)}); "
                                   "cast at the sender or add bf16/fp16/int8 compression")
    if msg.kind == "kv" and model_dtype is not None:
        restored = any(s.name in ("int8", "bf16", "fp16") for s in steps)
        arrives = model_dtype if restored else msg.tensors["keys"].dtype
        if arrives != model_dtype:
            fail("dtypes.keys", f"kv tensors are {arrives} but the receiver's model runs in {model_dtype}; "
                                "a kv cache is used as is, so run both agents in one dtype")


def all_finite(t: torch.Tensor) -> bool:
    """Whether every element is finite, exactly, in one read of the tensor with no
    tensor-sized temporary in the common case: a NaN anywhere makes the sum NaN and an
    infinity makes it infinite or NaN, so a finite sum proves every element finite. A
    non-finite sum is either a real NaN/Inf or finite values whose sum overflowed: the
    full element-wise check (only then) tells which."""
    if t.numel() == 0:
        return True
    total = torch.sum(t, dtype=torch.float64 if t.dtype == torch.float64 else torch.float32)
    return bool(torch.isfinite(total)) or bool(torch.isfinite(t).all())


def _check_finite(msg, fail) -> None:
    for name, t in msg.tensors.items():
        if t.is_floating_point() and not all_finite(t):
            bad = int((~torch.isfinite(t)).sum())
            fail(name, f"{bad} NaN/Inf values; the sender's computation diverged")


def _check_text(msg, fail) -> None:
    texts, seq_lens = msg.header.texts, msg.header.seq_lens
    if not texts or not all(isinstance(s, str) for s in texts):
        fail("texts", "a text message needs one string per row")
    if seq_lens and len(seq_lens) != len(texts):
        fail("seq_lens", f"{len(seq_lens)} entries for {len(texts)} rows of text")


def _check_rows(msg, fail) -> None:
    h, mask = msg.header, msg.tensors["mask"]
    if mask.ndim != 2:
        fail("mask", f"must be [B, T], got {list(mask.shape)}")
    if not bool(((mask == 0) | (mask == 1)).all()):
        fail("mask", "values must be 0 (pad) or 1 (real)")
    sums = [int(n) for n in mask.long().sum(-1)]
    if list(h.seq_lens) != sums:
        fail("seq_lens", f"header says {list(h.seq_lens)}, mask has {sums} real slots per row")
    m = h.latent_slots
    if m < 0 or m > mask.shape[1] or (m and not bool(mask[:, mask.shape[1] - m:].bool().all())):
        fail("latent_slots", f"{m} trailing latent slots must be real in every row (mask width {mask.shape[1]})")


def _check_kv(msg, steps, fingerprint, fail) -> None:
    h, t = msg.header, msg.tensors
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
    _check_fingerprint(h.fingerprint, fingerprint, fail)
    fp = h.fingerprint
    heads, dim, layers = fp.get("num_kv_heads"), fp.get("head_dim"), fp.get("num_layers")
    if (keys.shape[2], keys.shape[4]) != (heads, dim):
        fail("keys", f"[H_kv, D] = {[keys.shape[2], keys.shape[4]]} but the model has {[heads, dim]}")
    if len(h.layers) != keys.shape[0]:
        fail("layers", f"{len(h.layers)} layer indices for {keys.shape[0]} stacked layers")
    if not any(s.name.startswith("layers:") for s in steps) and tuple(h.layers) != tuple(range(layers)):
        fail("layers", f"a kv message must carry all {layers} layers in order, got {list(h.layers)}; "
                       "send a subset only through the layers:<i,j,...> compression")


def _check_fingerprint(sent: dict, mine: dict | None, fail) -> None:
    if mine is None:
        fail("fingerprint", "a kv message can only be checked against the receiver's fingerprint; pass it")
    differ = [f for f in FINGERPRINT_FIELDS if sent.get(f) != mine.get(f)]
    if differ:
        detail = "; ".join(f"{f}: sender {sent.get(f)!r}, receiver {mine.get(f)!r}" for f in differ)
        fail(f"fingerprint.{differ[0]}", f"kv messages need the same model on both ends ({detail}); "
                                         "use kind hidden with a codec between different models",
             FingerprintMismatchError)


def _check_soft(msg, size, fail) -> None:
    name = msg.kind
    vecs, mask = msg.tensors[name], msg.tensors["mask"]
    if vecs.ndim != 3 or list(vecs.shape[:2]) != list(mask.shape):
        fail(name, f"must be [B, S, D] with mask [B, S]; got {list(vecs.shape)} and mask {list(mask.shape)}")
    if size is not None and vecs.shape[-1] != size:
        fail(name, f"vectors have size {vecs.shape[-1]} but this edge reads vectors of size {size}; "
                   "put a codec (ridge, relative or hub) fitted for these two models on this edge")
