#!/usr/bin/env bash
# Set up (if needed) and run the example latent chain on an embedded local Ray, offline.
# The set-up's own output (pip's notices) goes to out/setup.log, shown only if it fails, so
# the terminal holds the run's lines: progress, answers, model loads and the summary.
# Extra arguments go to `latentray run` (--verbose shows Ray's own output too).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p out
[ -x .venv/bin/latentray ] || echo "[latentray] first run: installing into .venv (log: out/setup.log)" >&2
if ! bash scripts/setup.sh > out/setup.log 2>&1; then
  cat out/setup.log >&2
  echo "[latentray] set-up failed (log above, also in out/setup.log)" >&2
  exit 1
fi
exec .venv/bin/latentray run topologies/examples/latent_chain.yaml \
  --input topologies/examples/questions.jsonl --output out/latent_chain --restart "$@"
