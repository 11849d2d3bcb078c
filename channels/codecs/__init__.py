"""Codecs: map a hidden message from its sender's space into its receiver's.

  identity  vectors used as sent (embeds edges)
  realign   one model: the receiver realigns the sender's states (LatentMAS W_a)
  ridge     a fitted affine map per (sender, receiver) pair
  relative  cosines to shared anchor points, zero-shot, one part per model
  hub       a universal space, one encoder and one decoder per model
  resampler a trained soft-token adapter in a hub space: K learned queries per receiver
A spec names a codec by key or as module:Class (a subclass of channels.codecs.base.Codec).
"""
from __future__ import annotations

import importlib

from latentray.channels.errors import CodecError

from .base import Codec
from .hub import Hub
from .identity import Identity
from .realign import Realign
from .relative import Relative
from .resampler import Resampler
from .ridge import Ridge

REGISTRY = {c.key: c for c in (Identity, Realign, Ridge, Relative, Hub, Resampler)}


def codec_class(name: str) -> type:
    if name in REGISTRY:
        return REGISTRY[name]
    module, _, attr = name.partition(":")
    if not (module and attr):
        raise CodecError(f"unknown codec {name!r}; use one of {', '.join(REGISTRY)} or module:Class")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise CodecError(f"codec {name!r} cannot be imported: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Codec)):
        raise CodecError(f"codec {name!r} is not a subclass of channels.codecs.base.Codec")
    return cls


def make_codec(name: str, **options) -> Codec:
    return codec_class(name)(**options)


def part_role(codec: Codec, side: str) -> str:
    """Key under a part's meta["models"] for the model that loads it on `side` (encode/decode)."""
    if codec.shared_space:
        return "model"
    return "src" if side == "encode" else "dst"
