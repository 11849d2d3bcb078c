"""Load a model ref: (model, tokenizer) in eval mode on the resolved device, plus how it loaded.

GGUF-backed refs (builtin:, gguf:) go through the cache (cache.py): the first load
converts, later loads read safetensors. trust_remote_code stays off unless the spec
turns it on.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

import torch

from ..errors import ModelRefError
from . import cache
from .builtin import BUILTINS
from .gguf import convert_gguf
from .refs import ModelRef
from .tiny import build_tiny

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class Loaded(NamedTuple):
    model: object
    tokenizer: object
    info: dict  # ref, how (built | cache | converted | pretrained), load_s, convert_s


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


def converted_dir(parsed: ModelRef) -> tuple:
    """The cached safetensors directory of a builtin:/gguf: ref: (dir, converted now?, convert_s)."""
    if parsed.kind == "builtin":
        model = BUILTINS[parsed.target]
        model.check_installed()
        if model.sha256 and cache.is_complete(cache.entry_dir(model.sha256)):
            return cache.entry_dir(model.sha256), False, 0.0
        scratch = cache.cache_root() / "gguf"
        scratch.mkdir(parents=True, exist_ok=True)
        path = model.gguf_path(scratch)
        sha = cache.file_sha256(path)
        if model.sha256 and sha != model.sha256:
            raise ModelRefError(f"builtin:{model.name}: {path} has sha256 {sha[:12]}..., expected "
                                f"{model.sha256[:12]}...; reinstall: `{model.pip} --force-reinstall`")
        out = cache.ensure_entry(sha, lambda tmp: convert_gguf(path, tmp))
        if path.parent == scratch:
            path.unlink(missing_ok=True)  # assembled only to be converted; the chunks stay installed
        return out
    path = Path(parsed.target)
    return cache.ensure_entry(cache.file_sha256(path), lambda tmp: convert_gguf(path, tmp))


def _from_pretrained(target: str, ref: str, torch_dtype, trust_remote_code: bool):
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one bar per actor would flood the driver's log
    # A damaged or partial directory fails inside transformers with OSError, ValueError
    # (unknown architecture, no tokenizer files) or SafetensorError (truncated weights).
    fix = "check it is a complete save_pretrained directory (config, tokenizer and weights files)"
    try:
        tokenizer = AutoTokenizer.from_pretrained(target, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelRefError(f"cannot load the tokenizer of {ref!r}: {_first_line(exc)}; {fix}") from None
    try:
        model = AutoModelForCausalLM.from_pretrained(target, dtype=torch_dtype, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, SafetensorError) as exc:
        raise ModelRefError(f"cannot load the weights of {ref!r}: {_first_line(exc)}; {fix}") from None
    return model, tokenizer


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(".:") if text else type(exc).__name__


def load_model(ref: str, *, dtype: str = "float32", device: str = "auto", seed: int = 0,
               trust_remote_code: bool = False, num_gpus: float = 0.0) -> Loaded:
    """Return Loaded(model, tokenizer, info); the tokenizer pads on the left."""
    t0 = time.perf_counter()
    parsed = ModelRef.parse(ref)
    parsed.check_available()
    dev = resolve_device(device, num_gpus)
    torch_dtype = resolve_dtype(dtype, dev)
    info = {"ref": ref, "how": "pretrained", "convert_s": 0.0}
    if parsed.kind == "tiny":
        model, tokenizer = build_tiny(parsed.target, seed=seed, dtype=torch_dtype)
        info["how"] = "built"
    else:
        target = parsed.target
        if parsed.kind in ("builtin", "gguf"):
            path, converted, convert_s = converted_dir(parsed)
            target = str(path)
            info.update(how="converted" if converted else "cache", convert_s=round(convert_s, 2))
        model, tokenizer = _from_pretrained(target, ref, torch_dtype, trust_remote_code)
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.eval()
    model = model.to(dev)
    info["load_s"] = round(time.perf_counter() - t0, 2)
    return Loaded(model, tokenizer, info)
