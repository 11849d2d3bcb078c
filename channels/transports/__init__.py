"""Transports: how a message's tensors move from the actor that made them to its readers.

A channel names one by key, or by `module:Class` (a subclass of
channels.transports.base.Transport); `get_transport(name, **options)` builds it. The
registry is lazy: a transport's module is imported when first asked for, so importing
this package (or any module of channels but rdt.py) does not import Ray.
"""
from __future__ import annotations

import importlib

from ..errors import TransportError, TransportUnavailable
from .base import Transport, owned_copy

# key -> "module:Class", imported on first use
TRANSPORTS = {"object_store": "latentray.channels.transports.object_store:ObjectStoreTransport",
              "rdt": "latentray.channels.transports.rdt:RdtTransport"}
DEFAULT_TRANSPORT = "object_store"
_CLASSES: dict = {}  # name -> class, once imported

# Names this package used to import eagerly, now loaded from their module on first access.
_LAZY = {"ObjectStoreTransport": "object_store", "RdtTransport": "rdt", "RdtMethods": "rdt",
         "create_group": "rdt", "destroy_group": "rdt", "producer_method": "rdt"}


def transport_class(name: str) -> type:
    """The Transport subclass a channel's transport name stands for."""
    if name in _CLASSES:
        return _CLASSES[name]
    path = TRANSPORTS.get(name, name)
    module, _, attr = path.partition(":") if isinstance(path, str) else ("", "", "")
    if not (module and attr):
        raise TransportError(f"unknown transport {name!r}; known transports: {sorted(TRANSPORTS)}, "
                             "or module:Class", transport=str(name))
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise TransportError(f"transport {name!r} cannot be imported: {exc}", transport=str(name)) from None
    if not (isinstance(cls, type) and issubclass(cls, Transport)):
        raise TransportError(f"transport {name!r} is not a subclass of channels.transports.base.Transport",
                             transport=str(name))
    _CLASSES[name] = cls
    return cls


def get_transport(name: str = DEFAULT_TRANSPORT, **options) -> Transport:
    return transport_class(name)(**options)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DEFAULT_TRANSPORT", "TRANSPORTS", "ObjectStoreTransport", "RdtMethods", "RdtTransport",
           "Transport", "TransportError", "TransportUnavailable", "create_group", "destroy_group",
           "get_transport", "owned_copy", "producer_method", "transport_class"]
