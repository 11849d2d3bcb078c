#!/usr/bin/env bash
# Set up (if needed) and run the example latent chain on an embedded local Ray, offline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/latentray run topologies/examples/latent_chain.yaml \
  --input topologies/examples/questions.jsonl --output out/latent_chain --restart "$@"
