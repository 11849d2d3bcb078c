"""Latent messages: the typed envelope, the kinds, the transports and the codecs.

Importing the package is light (no torch, no Ray): topologies read `channels.kinds`
without loading a tensor library. The envelope loads on first use.
"""
from .kinds import KINDS

__all__ = ["KINDS", "LatentMessage", "MessageHeader"]


def __getattr__(name: str):
    if name in ("LatentMessage", "MessageHeader"):
        from . import message

        return getattr(message, name)
    raise AttributeError(f"module 'channels' has no attribute {name!r}")
