"""Settings for Ray's zero-copy torch tensor path, shared by the driver and the actors.

Ray pickles torch tensors with a copy on put and on get unless this variable is set
before `import ray`, in the driver and in every worker (through the runtime_env).
"""
from __future__ import annotations

import os
import warnings

ZERO_COPY_ENV = {"RAY_ENABLE_ZERO_COPY_TORCH_TENSORS": "1"}


def set_zero_copy_env() -> None:
    """Turn the flag on in this process (a value already set wins); only effective before
    the process first imports ray."""
    for key, value in ZERO_COPY_ENV.items():
        os.environ.setdefault(key, value)


def quiet_zero_copy_warnings() -> None:
    """Zero-copy tensors alias read-only store memory; latentray never writes a received
    tensor (it clones before any in-place op), so the per-message warnings say nothing new."""
    warnings.filterwarnings("ignore", message="Zero-copy tensor serialization is enabled")
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
