"""Convert a GGUF file into a plain float safetensors + tokenizer directory.

transformers reads GGUF (dequantising to float) but such a model carries a GGUF
quantisation config and refuses save_pretrained; we build a clean model of the same
config without it, give it the dequantised weights, and save that. Later loads are an
ordinary from_pretrained of the cached directory.
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import partial
from pathlib import Path

import torch

from ..errors import ModelRefError, first_line


def _needs(package: str, pip: str) -> None:
    import importlib.util

    if importlib.util.find_spec(package) is None:
        raise ModelRefError(f"loading GGUF files needs the package {package!r}: run `{pip}`")


def read_gguf(path: Path):
    """(model, tokenizer) straight from a GGUF file, float32, on the CPU."""
    _needs("gguf", "pip install 'gguf>=0.10,<1'")
    _needs("accelerate", "pip install 'accelerate>=1.0,<2'")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with _no_conversion_bar():
            tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
            model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelRefError(f"cannot read GGUF file {str(path)!r}: {first_line(exc)}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    return model, tokenizer


@contextmanager
def _no_conversion_bar():
    """Silence transformers' "Converting and de-quantizing GGUF tensors" bar: it calls tqdm
    itself, past the progress-bar switch, and inside an actor each redraw becomes one log
    line on the driver. The model's load line reports how long the conversion took."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    bar = getattr(gguf_utils, "tqdm", None)
    if bar is not None:
        gguf_utils.tqdm = partial(bar, disable=True)
    try:
        yield
    finally:
        if bar is not None:
            gguf_utils.tqdm = bar


def clean_copy(model):
    """The same architecture and weights without the GGUF quantisation config."""
    from transformers import AutoModelForCausalLM

    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    clean.load_state_dict(model.state_dict(), assign=True, strict=False)
    clean.tie_weights()
    missing = [n for n, p in clean.named_parameters() if p.is_meta]
    if missing:
        raise ModelRefError(f"GGUF conversion left parameters without weights: {', '.join(missing[:5])}")
    clean.generation_config = model.generation_config
    return clean


def convert_gguf(path: Path, out_dir: Path) -> dict:
    """Write the converted model into out_dir; return metadata for the cache marker."""
    import transformers

    model, tokenizer = read_gguf(path)
    clean = clean_copy(model)
    out_dir.mkdir(parents=True)
    clean.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    return {"source": str(path), "architecture": type(clean).__name__,
            "transformers": transformers.__version__}
