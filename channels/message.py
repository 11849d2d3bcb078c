"""LatentMessage: a small plain-data header plus named tensors.

Which tensors a message carries, and their layout, is up to its kind (channels/kinds/:
kv, hidden, embeds, text; B = batch rows, T/S = sequence slots, left padded). Shapes are
logical: a tensor may lie in memory in another dimension order (a sending agent's keys
are views of its slot-major cache); transports keep that order (transports/memory_order.py).
The header is msgpack-serialisable, so it can be inspected without touching tensors.
"""
from __future__ import annotations

import dataclasses
import uuid
import zlib
from dataclasses import dataclass, field

import msgpack
import torch

from .kinds import KINDS, MessageKind, find_kind, get_kind  # noqa: F401  (KINDS: re-exported)

_UNKNOWN_KIND = MessageKind()  # counts the bytes of a message whose kind is not (yet) checked


@dataclass(frozen=True)
class MessageHeader:
    kind: str
    sender: str
    fingerprint: dict
    shapes: dict = field(default_factory=dict)  # tensor name -> list[int]
    dtypes: dict = field(default_factory=dict)  # tensor name -> "float32", ...
    layers: tuple = ()  # model layer index of each entry along keys/values dim 0
    seq_lens: tuple = ()  # real (unpadded) slots per row
    latent_steps: int = 0
    latent_slots: int = 0  # trailing slots of each row that are latent steps
    trace_id: str = ""
    texts: tuple = ()  # kind "text": one string per row
    extra: dict = field(default_factory=dict)  # transport / compression notes

    def to_bytes(self) -> bytes:
        return msgpack.packb(dataclasses.asdict(self), use_bin_type=True)

    @classmethod
    def from_bytes(cls, data: bytes) -> "MessageHeader":
        """The header `to_bytes` wrote; ValueError naming the problem for anything else."""
        try:
            raw = msgpack.unpackb(data, raw=False)
        except Exception as exc:  # msgpack raises several unrelated types for garbage bytes
            raise ValueError(f"the header is not msgpack data ({type(exc).__name__})") from None
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(raw, dict) or not {"kind", "sender", "fingerprint"} <= set(raw) <= names:
            found = sorted(map(str, raw)) if isinstance(raw, dict) else type(raw).__name__
            raise ValueError(f"the header has fields {found}; expected kind, sender, fingerprint and some of "
                             f"{sorted(names - {'kind', 'sender', 'fingerprint'})}")
        for name in ("layers", "seq_lens", "texts"):
            if isinstance(raw.get(name), list):
                raw[name] = tuple(raw[name])
        return cls(**raw)


@dataclass(frozen=True)
class LatentMessage:
    header: MessageHeader
    tensors: dict  # name -> torch.Tensor; receivers never mutate these

    @property
    def kind(self) -> str:
        return self.header.kind

    @property
    def sender(self) -> str:
        return self.header.sender

    @property
    def nbytes(self) -> int:
        """Payload bytes, as the message's kind counts them (every tensor, a text message's texts)."""
        return (find_kind(self.kind) or _UNKNOWN_KIND).nbytes(self)

    @classmethod
    def build(cls, kind: str, sender: str, fingerprint: dict, tensors: dict, **header) -> "LatentMessage":
        """Build a message, filling shapes and dtypes from the tensors themselves."""
        get_kind(kind)  # UnknownKindError (a ValueError) naming the known kinds
        header.setdefault("trace_id", uuid.uuid4().hex[:16])
        head = MessageHeader(
            kind=kind, sender=sender, fingerprint=dict(fingerprint),
            shapes={k: list(t.shape) for k, t in tensors.items()},
            dtypes={k: str(t.dtype).removeprefix("torch.") for k, t in tensors.items()},
            **header,
        )
        return cls(head, dict(tensors))

    def replace(self, tensors: dict | None = None, **header) -> "LatentMessage":
        """A new message with some tensors or header fields changed (shapes kept in sync)."""
        tensors = dict(self.tensors if tensors is None else tensors)
        header.setdefault("shapes", {k: list(t.shape) for k, t in tensors.items()})
        header.setdefault("dtypes", {k: str(t.dtype).removeprefix("torch.") for k, t in tensors.items()})
        return LatentMessage(dataclasses.replace(self.header, **header), tensors)


def header_mismatch(msg: LatentMessage):
    """(field, reason) for the first place the tensors disagree with the header (a tensor
    that is not a torch.Tensor, a shape or dtype other than the header's, a header entry
    with no tensor), or None when they agree."""
    h = msg.header
    for name, t in msg.tensors.items():
        if not isinstance(t, torch.Tensor):
            return name, f"tensor {name!r} is a {type(t).__name__}, not a torch.Tensor"
        if h.shapes.get(name) != list(t.shape):
            return f"shapes.{name}", f"header says {h.shapes.get(name)}, tensor {name!r} is {list(t.shape)}"
        dtype = str(t.dtype).removeprefix("torch.")
        if h.dtypes.get(name) != dtype:
            return f"dtypes.{name}", f"header says {h.dtypes.get(name)}, tensor {name!r} is {dtype}"
    for name in sorted(set(h.shapes) - set(msg.tensors)):
        return f"shapes.{name}", f"header lists tensor {name!r} that the message does not carry"
    return None


def message_checksum(msg: LatentMessage) -> int:
    """CRC32 over every tensor's bytes, in name order: proves a message was not mutated."""
    crc = zlib.crc32(msg.header.kind.encode())
    for name in sorted(msg.tensors):
        t = msg.tensors[name].detach().cpu().contiguous().reshape(-1)
        crc = zlib.crc32(t.view(torch.uint8).numpy(), crc)
    return crc


def dtype_from_name(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None) if isinstance(name, str) else None
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"{name!r} is not a torch dtype name")
    return dtype
