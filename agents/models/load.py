"""Load a model ref: (model, tokenizer) in eval mode on the resolved device, plus how it loaded.

GGUF-backed refs (builtin:, gguf:) go through the cache (cache.py): the first load
converts, later loads read safetensors. trust_remote_code stays off unless the spec
turns it on.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple, Optional

import torch

from ..errors import ModelRefError, first_line
from . import cache, cpu_linear
from .builtin import BUILTINS
from .gguf import convert_gguf
from .gguf_check import check_gguf
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


def converted_dir(parsed: ModelRef, sha256: Optional[str] = None) -> tuple:
    """The cached safetensors directory of a builtin:/gguf: ref: (dir, converted now?, convert_s).

    sha256: the digest the file must have (a built-in model's own, or the spec's for a
    gguf: ref). With one, a conversion already cached under it is reused unread; the file
    is hashed only when it has to be converted. Entries are keyed by the digest computed
    from the file, never by the expected one, so a file that differs is refused, not
    served under the digest it was meant to have.
    """
    label, fix = f"gguf:{parsed.target}", "copy or download the file again, or correct models.<id>.sha256"
    if parsed.kind == "builtin":
        model = BUILTINS[parsed.target]
        model.check_installed()
        label, fix, sha256 = f"builtin:{model.name}", f"reinstall: `{model.pip} --force-reinstall`", model.sha256
    if sha256 and cache.is_complete(cache.entry_dir(sha256)):
        return cache.entry_dir(sha256), False, 0.0
    if parsed.kind == "builtin":
        scratch = cache.cache_root() / "gguf"
        scratch.mkdir(parents=True, exist_ok=True)
        path = model.gguf_path(scratch)
    else:
        path = Path(parsed.target)
    try:
        return _verified_conversion(path, sha256, label, fix)
    finally:
        if parsed.kind == "builtin" and path.parent == scratch:
            path.unlink(missing_ok=True)  # assembled only to be converted; the chunks stay installed


def _verified_conversion(path: Path, expected: Optional[str], label: str, fix: str) -> tuple:
    """Hash the file, refuse it if it is damaged or not the expected one, convert it once."""
    sha = cache.file_sha256(path)
    if expected and sha != expected:
        check_gguf(path, label)  # a damaged file says where it is damaged
        raise ModelRefError(f"{label}: {path} has sha256 {sha}, expected {expected}, so it is damaged or "
                            f"another file; {fix}")

    def convert(tmp: Path) -> dict:
        check_gguf(path, label)  # before the slow reader, which fails obscurely on damaged files
        return convert_gguf(path, tmp)

    return cache.ensure_entry(sha, convert)


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
        raise ModelRefError(f"cannot load the tokenizer of {ref!r}: {first_line(exc).rstrip('.:')}; {fix}") from None
    try:
        model = AutoModelForCausalLM.from_pretrained(target, dtype=torch_dtype, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, SafetensorError) as exc:
        raise ModelRefError(f"cannot load the weights of {ref!r}: {first_line(exc).rstrip('.:')}; {fix}") from None
    return model, tokenizer


def load_model(ref: str, *, dtype: str = "float32", device: str = "auto", seed: int = 0,
               trust_remote_code: bool = False, num_gpus: float = 0.0, sha256: Optional[str] = None) -> Loaded:
    """Return Loaded(model, tokenizer, info); the tokenizer pads on the left.
    sha256: the digest a gguf: file must have (checked when it is converted)."""
    t0 = time.perf_counter()
    parsed = ModelRef.parse(ref)
    sha256 = parsed.check_sha256(sha256)
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
            path, converted, convert_s = converted_dir(parsed, sha256)
            target = str(path)
            info.update(how="converted" if converted else "cache", convert_s=round(convert_s, 2))
        model, tokenizer = _from_pretrained(target, ref, torch_dtype, trust_remote_code)
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.eval()
    model = model.to(dev)
    cpu_linear.install(model)  # float32 on a CPU: each weight read once per decoding step
    info["load_s"] = round(time.perf_counter() - t0, 2)
    return Loaded(model, tokenizer, info)
