"""Transports: how a message's tensors move from the actor that made them to its readers.

A channel names one by key; `get_transport(name, **options)` builds it.
"""
from __future__ import annotations

from ..errors import TransportError, TransportUnavailable
from .base import Transport, owned_copy
from .object_store import ObjectStoreTransport
from .rdt import RdtMethods, RdtTransport, create_group, destroy_group, producer_method

TRANSPORTS = {"object_store": ObjectStoreTransport, "rdt": RdtTransport}
DEFAULT_TRANSPORT = "object_store"


def get_transport(name: str = DEFAULT_TRANSPORT, **options) -> Transport:
    try:
        cls = TRANSPORTS[name]
    except KeyError:
        raise TransportError(f"unknown transport {name!r}; known transports: {sorted(TRANSPORTS)}",
                             transport=str(name)) from None
    return cls(**options)


__all__ = ["DEFAULT_TRANSPORT", "TRANSPORTS", "ObjectStoreTransport", "RdtMethods", "RdtTransport",
           "Transport", "TransportError", "TransportUnavailable", "create_group", "destroy_group",
           "get_transport", "owned_copy", "producer_method"]
