"""Latent messages: the typed envelope, the transports and the codecs."""
from .message import KINDS, LatentMessage, MessageHeader

__all__ = ["KINDS", "LatentMessage", "MessageHeader"]
