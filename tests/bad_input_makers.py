"""Makers of bad inputs for the corpus in test_bad_inputs.py: damaged copies of real files,
a pickle that leaves a marker when loaded, and mutations of a good latent message."""
from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

from safetensors.torch import load_file, save_file

from latentray.agents.models import build_tiny
from latentray.channels.message import LatentMessage
from latentray.channels.transports import get_transport
from latentray.channels.transports.object_store import InlineMessage

# -- model directories and GGUF files ----------------------------------------------------


def saved_tiny(path: Path) -> Path:
    model, tok = build_tiny("llama-64")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def no_tokenizer(d):
    for p in d.iterdir():
        if p.name.startswith("tokenizer") or p.name == "chat_template.jinja":
            p.unlink()


def truncated_weights(d):
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])


def damaged_gguf_copies(real_path: Path, d: Path) -> dict:
    """{name: path} of damaged copies of a real GGUF file, written into d."""
    real = real_path.read_bytes()
    flipped = bytearray(real)
    flipped[-1000] ^= 0xFF  # inside the last tensor's data: the header still parses
    files = {"truncated": real[:len(real) * 6 // 10], "header_cut": real[:1000], "flipped": bytes(flipped),
             "wrong_magic": b"GGML" + real[4:4096], "version_1": b"GGUF" + struct.pack("<I", 1) + real[8:4096],
             "empty": b""}
    for name, data in files.items():
        (d / f"{name}.gguf").write_bytes(data)
    return {name: d / f"{name}.gguf" for name in files}


# -- codec part files --------------------------------------------------------------------


def resave(path: Path, change):
    """Rewrite a safetensors file with `change(tensors)`: a well-formed file with bad content."""
    tensors = load_file(str(path))
    save_file(change(tensors), str(path))


def nan_weight(t):
    t["weight"][0, 0] = float("nan")
    return t


class Touch:
    """A pickle that creates a file when it is loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


# -- latent messages ---------------------------------------------------------------------


def poke(name: str, index, value):
    """Mutation: one element of tensor `name` set to `value` (a consistent envelope)."""
    def mutate(m):
        t = m.tensors[name].clone()
        t[index] = value
        return m.replace({**m.tensors, name: t})
    return mutate


def cast(dtype, *names):
    return lambda m: m.replace({**m.tensors, **{n: m.tensors[n].to(dtype) for n in names}})


def reshape(name, fn):
    return lambda m: m.replace({**m.tensors, name: fn(m.tensors[name])})


def drop(name):
    return lambda m: m.replace({k: t for k, t in m.tensors.items() if k != name})


def lie(**header):
    """The header changed, the tensors not: shapes and dtypes are not re-derived."""
    return lambda m: LatentMessage(dataclasses.replace(m.header, **header), dict(m.tensors))


def lie_about(field, name, value):
    return lambda m: lie(**{field: {**getattr(m.header, field), name: value}})(m)


def bytes_with(header_change):
    """Maker: the object-store bytes of a message, under the header `header_change(m)` writes."""
    def build(m):
        packed = get_transport("object_store").pack(m)
        assert isinstance(packed, InlineMessage)
        return InlineMessage(header_change(m), packed.payload)
    return build
