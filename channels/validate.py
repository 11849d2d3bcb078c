"""Check a latent message on arrival, before any of it reaches the model.

`validate_message` reads the message as it arrived (compressed or not) and raises a
MessageError naming sender, receiver and the offending field; it never changes the
message. Here, for every kind: the header's fields have their types, the kind is known
and is the channel's, the tensors are the kind's (plus what recorded compressions add)
and agree with the header, dtypes are ones the receiver handles, every float is finite.
Then the kind checks its own (channels/kinds/: kv geometry and fingerprint, latents of
the edge's vector size, rows and sequence lengths, texts), and each recorded compression
step checks what it added (scales, sinks).
"""
from __future__ import annotations

import torch

from .compression import check_compression_names
from .compression.base import RECORD
from .errors import MessageError
from .kinds import KINDS, Arrival, find_kind
from .message import LatentMessage, header_mismatch

FLOAT_DTYPES = ("float32", "bfloat16", "float16")
INDEX_DTYPES = ("int64", "int32", "int16", "int8", "uint8", "bool")


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
    kind = find_kind(h.kind)
    if kind is None:
        fail("kind", f"unknown kind {h.kind!r}; expected one of {tuple(KINDS)}")
    if edge_kind is not None and h.kind != edge_kind:
        fail("kind", f"the channel carries {edge_kind!r} messages but this one is {h.kind!r}")
    steps = _steps(msg, fail)
    _check_envelope(msg, kind, steps, fail)
    _check_dtypes(msg, kind, steps, fail)
    _check_finite(msg, fail)
    kind.validate(msg, Arrival(receiver, receiver_fingerprint, fail, model_dtype, soft_dim, tuple(steps)))
    if kind.payload:  # a kind without payload has nothing a compression could have added
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


def _check_envelope(msg, kind, steps, fail) -> None:
    h, tensors = msg.header, msg.tensors
    expected = set(kind.tensors)
    for step in steps:
        expected |= set(step.added_tensors(msg))
    for name in sorted(expected - set(tensors)):
        fail(name, f"a {h.kind} message needs tensor {name!r}; it is missing")
    for name in sorted(set(tensors) - expected):
        fail(name, f"unexpected tensor {name!r} in a {h.kind} message (expected {sorted(expected)})")
    mismatch = header_mismatch(msg)
    if mismatch:
        fail(*mismatch)


def _check_dtypes(msg, kind, steps, fail) -> None:
    quantised = any(s.name == "int8" for s in steps)
    for name, t in msg.tensors.items():
        dtype = str(t.dtype).removeprefix("torch.")
        if name in kind.index_tensors:
            if dtype not in INDEX_DTYPES:
                fail(f"dtypes.{name}", f"{dtype}; {name} must be an integer or bool tensor")
        elif name in kind.payload and quantised:
            continue  # int8 checks its own payload and scales
        elif dtype not in FLOAT_DTYPES:
            fail(f"dtypes.{name}", f"{dtype} is not a float type the receiver handles ({', '.join(FLOAT_DTYPES)}); "
                                   "cast at the sender or add bf16/fp16/int8 compression")


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
