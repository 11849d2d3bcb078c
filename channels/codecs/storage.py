"""Codec parts on disk: <name>.safetensors (tensors) + <name>.json (metadata). No pickle.

Metadata: format, version, codec, part, the models it belongs to with their refs and
fingerprints ("models": {"src": ..., "dst": ...} for a pair, {"model": ..., "reference":
...} for a shared space), the anchor-set hash, the layers it reads ("last"), its wire
space, and how it was fitted. Both files are written under temporary names and renamed,
the JSON last, so a part whose JSON exists is complete.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from latentray.channels.errors import CodecError, CodecMismatchError

from .base import FORMAT, VERSION, Part

PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt")
# What must agree for a part fitted on one model to apply to another copy of it.
FINGERPRINT_FIELDS = ("architecture", "hidden_size", "num_layers", "vocab_size", "tokenizer_hash", "weights_hash")


def save_part(directory, part: Part) -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "version": VERSION, **part.meta, "part": part.name}
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in part.tensors.items()}
    tmp_t, tmp_j = d / f".{part.name}.safetensors.tmp", d / f".{part.name}.json.tmp"
    save_file(tensors, str(tmp_t), metadata={"latentray": json.dumps({"codec": meta.get("codec"), "part": part.name})})
    tmp_j.write_text(json.dumps(meta, indent=1, sort_keys=True))
    os.replace(tmp_t, d / f"{part.name}.safetensors")
    os.replace(tmp_j, d / f"{part.name}.json")
    return d / f"{part.name}.json"


def read_meta(directory, name: str) -> dict:
    """A part's metadata (no tensors read); CodecError if it is missing or not ours."""
    path = Path(directory) / f"{name}.json"
    if not path.is_file():
        pickles = [p.name for p in sorted(Path(directory).glob(f"{name}.*")) if p.suffix in PICKLE_SUFFIXES]
        found = (f" (found {', '.join(pickles)}: pickle files are never loaded, they can run code; "
                 "codec parts are safetensors + JSON)") if pickles else ""
        raise CodecError(f"codec part {name!r} is not in {directory}{found}; fit it with `latentray fit-codec SPEC "
                         f"--out {directory}` (a trained codec's: `latentray train-codec SPEC --out {directory}`)")
    try:
        meta = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CodecError(f"{path} is not a codec part's metadata ({exc}); refit it") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CodecError(f"{path} is not a latentray codec part; refit it with latentray fit-codec")
    if meta.get("version") != VERSION:
        raise CodecError(f"{path} has codec format version {meta.get('version')}, this latentray reads "
                         f"{VERSION}; {redo(meta)}")
    return meta


def load_part(directory, name: str) -> Part:
    meta = read_meta(directory, name)
    path = Path(directory) / f"{name}.safetensors"
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise CodecError(f"cannot read {path}: {exc}; refit it with latentray fit-codec") from None
    for key, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CodecError(f"{path}: tensor {key!r} holds NaN/Inf; refit it")
    return Part(name, tensors, meta)


def check_fingerprint(meta: dict, role: str, fingerprint: dict, part: str = "?") -> None:
    """Refuse a part fitted for another model: `role` is the key under meta["models"]."""
    fitted = (meta.get("models") or {}).get(role, {}).get("fingerprint") or {}
    differ = [f for f in FINGERPRINT_FIELDS if fitted.get(f) != fingerprint.get(f)]
    if differ:
        ref = (meta.get("models") or {}).get(role, {}).get("ref", "?")
        detail = "; ".join(f"{f}: fitted {fitted.get(f)!r}, here {fingerprint.get(f)!r}" for f in differ)
        who = "" if role == "model" else f"{role} "
        raise CodecMismatchError(f"codec part {part!r} was fitted for {who}model {ref!r}, not this one "
                                 f"({detail}); {redo(meta)}")


def redo(meta: dict) -> str:
    """How to make a part again: trained parts come from train-codec, the others from fit-codec."""
    return "retrain it with latentray train-codec" if meta.get("trained") else "refit it with latentray fit-codec"


def model_entry(ref: str, fingerprint: dict) -> dict:
    return {"ref": ref, "fingerprint": {k: fingerprint.get(k) for k in FINGERPRINT_FIELDS}}
