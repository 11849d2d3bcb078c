"""Model refs and loading: built-in real models, GGUF files, hub ids, local directories
and tiny random models of real architectures (see refs.py for the forms)."""
from .load import DTYPES, Loaded, load_model, resolve_device, resolve_dtype
from .refs import ModelRef
from .tiny import PRESETS, build_tiny

__all__ = ["DTYPES", "Loaded", "ModelRef", "PRESETS", "build_tiny", "load_model", "resolve_device",
           "resolve_dtype"]
