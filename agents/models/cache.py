"""The model cache: GGUF files converted once to float safetensors + tokenizer directories.

Root: $LATENTRAY_CACHE, default ~/.cache/latentray. A converted model lives in
models/<sha256 of the GGUF file>/, so the same file is converted once whatever its path,
and a changed file is converted again. A directory is written under a temporary name
and renamed into place, so a crash never leaves half a model where a loader would read
it; a lock file makes concurrent loaders (several actors starting at once) convert once
and the others wait and read the result.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

MARKER = "latentray.json"  # written last inside a complete entry


def cache_root() -> Path:
    root = os.environ.get("LATENTRAY_CACHE") or str(Path.home() / ".cache" / "latentray")
    return Path(root).expanduser()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def entry_dir(sha256: str) -> Path:
    return cache_root() / "models" / sha256


def is_complete(path: Path) -> bool:
    return (path / MARKER).is_file()


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_entry(sha256: str, write: Callable[[Path], dict]) -> tuple:
    """Return (directory, converted now?, seconds spent converting). `write(tmp_dir)`
    fills a fresh directory and returns metadata stored in its marker file."""
    final = entry_dir(sha256)
    if is_complete(final):
        return final, False, 0.0
    with _locked(final.parent / f".{sha256}.lock"):
        if is_complete(final):  # another process converted it while we waited
            return final, False, 0.0
        tmp = final.parent / f".{sha256}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        t0 = time.perf_counter()
        try:
            meta = write(tmp)
            seconds = time.perf_counter() - t0
            (tmp / MARKER).write_text(json.dumps({**meta, "sha256": sha256, "convert_s": round(seconds, 2)},
                                                 indent=2) + "\n")
            if final.exists():  # an incomplete leftover (no marker): replace it
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return final, True, seconds
