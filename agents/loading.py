"""ModelRef: where weights come from, and loading them.

  tiny:<preset>   a small random model of a real architecture, built in code (offline)
  hf:<hub id>     transformers from_pretrained (needs the hub or a local HF cache)
  <directory>     a local directory saved with save_pretrained
trust_remote_code stays off unless the spec turns it on.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import ModelRefError
from .tiny_models import PRESETS, build_tiny

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class ModelRef:
    kind: str  # "tiny" | "hf" | "local"
    target: str

    @classmethod
    def parse(cls, ref: str) -> "ModelRef":
        if ref.startswith("tiny:"):
            preset = ref[len("tiny:"):]
            if preset not in PRESETS:
                raise ModelRefError(f"unknown tiny model preset {preset!r} in {ref!r}; "
                                    f"use one of: {', '.join('tiny:' + p for p in sorted(PRESETS))}")
            return cls("tiny", preset)
        if ref.startswith("hf:"):
            if not ref[3:].strip():
                raise ModelRefError("empty hub id in 'hf:'; write hf:<org>/<name>")
            return cls("hf", ref[3:])
        if Path(ref).expanduser().is_dir():
            return cls("local", str(Path(ref).expanduser()))
        raise ModelRefError(f"model ref {ref!r} is neither tiny:<preset>, hf:<hub id> nor an existing directory")


def resolve_device(device: str, num_gpus: float = 0.0) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() and num_gpus > 0 else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelRefError(f"device {device!r} asked for but no CUDA GPU is visible; use device: auto or cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[dtype]


def load_model(ref: str, *, dtype: str = "float32", device: str = "auto", seed: int = 0,
               trust_remote_code: bool = False, num_gpus: float = 0.0):
    """Return (model, tokenizer) in eval mode on the resolved device, tokenizer left-padding."""
    parsed = ModelRef.parse(ref)
    dev = resolve_device(device, num_gpus)
    torch_dtype = resolve_dtype(dtype, dev)
    if parsed.kind == "tiny":
        model, tokenizer = build_tiny(parsed.target, seed=seed, dtype=torch_dtype)
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(parsed.target, trust_remote_code=trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(parsed.target, dtype=torch_dtype,
                                                         trust_remote_code=trust_remote_code)
        except OSError as exc:
            raise ModelRefError(f"cannot load {ref!r}: {str(exc).splitlines()[0]}") from None
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.eval()
    return model.to(dev), tokenizer
