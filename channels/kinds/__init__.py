"""Message kinds: one class per kind, one registry.

  kv      per-layer keys and values, read as a working-memory prefix (one model only)
  hidden  last-layer states, mapped by the edge codec into the receiver's input space
  embeds  soft tokens already in the input-embedding space (one model only)
  text    one string per row, joined into the reader's prompt
A new kind is a MessageKind subclass in its own file plus one `register_kind(Cls)` line;
transports, validation, compression and byte accounting then handle it unchanged.
Importing this package imports neither torch nor Ray.
"""
from __future__ import annotations

from collections.abc import Sequence

from latentray.channels.errors import UnknownKindError

from .base import MEMORY, SOFT_TOKENS, TEXT, Arrival, MessageKind, check_mask_rows
from .embeds import EmbedsKind
from .hidden import HiddenKind
from .kv import KvKind
from .soft import SoftTokenKind
from .text import TextKind

REGISTRY: dict = {}  # kind name -> MessageKind subclass
_INSTANCES: dict = {}  # kind name -> the one instance get_kind hands out (kinds hold no state)


def register_kind(cls: type) -> type:
    """Make `cls` (a MessageKind subclass with a name) known by its name; returns it, so
    it also works as a class decorator. Registering the same class again is a no-op."""
    if not (isinstance(cls, type) and issubclass(cls, MessageKind)):
        raise TypeError(f"register_kind takes a subclass of channels.kinds.MessageKind, got {cls!r}")
    name = cls.name
    if not (isinstance(name, str) and name.isidentifier()):
        raise ValueError(f"{cls.__name__}.name must be a short identifier such as 'scores', got {name!r}")
    if REGISTRY.get(name, cls) is not cls:
        raise ValueError(f"message kind {name!r} is already registered by {REGISTRY[name].__qualname__}; "
                         "give the new kind another name")
    REGISTRY[name] = cls
    _INSTANCES.setdefault(name, cls())
    return cls


def get_kind(name: str) -> MessageKind:
    """The kind called `name`; UnknownKindError (a ValueError) naming the known kinds."""
    kind = find_kind(name)
    if kind is None:
        raise UnknownKindError(name, KINDS)
    return kind


def find_kind(name) -> MessageKind | None:
    """The kind called `name`, or None (for a name read off the wire, before it is checked)."""
    return _INSTANCES.get(name) if isinstance(name, str) else None


def kinds_with(prop: str) -> list:
    """Names of the registered kinds whose property `prop` is true, in registry order."""
    return [name for name, kind in _INSTANCES.items() if getattr(kind, prop)]


class _KindNames(Sequence):
    """The registered kind names, in registration order; follows later registrations."""

    def __getitem__(self, i):
        return tuple(REGISTRY)[i]

    def __len__(self) -> int:
        return len(REGISTRY)

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and name in REGISTRY

    def __repr__(self) -> str:
        return repr(tuple(REGISTRY))


KINDS = _KindNames()

for _cls in (KvKind, HiddenKind, EmbedsKind, TextKind):
    register_kind(_cls)

__all__ = ["KINDS", "MEMORY", "REGISTRY", "SOFT_TOKENS", "TEXT", "Arrival", "EmbedsKind", "HiddenKind", "KvKind",
           "MessageKind", "SoftTokenKind", "TextKind", "check_mask_rows", "find_kind", "get_kind", "kinds_with",
           "register_kind"]
