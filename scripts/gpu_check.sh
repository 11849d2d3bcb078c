#!/usr/bin/env bash
# The checks that need NVIDIA GPUs, in one pass of under 8 minutes:
#   setup               .venv with a CUDA torch (created if missing)
#   gpu_tests           python -m pytest -q -m gpu
#   kv_equivalence_bf16 SmolLM2-135M in bf16 on cuda: KV chain vs one conversation
#   transport_rdt       benchmarks/transport.py --rdt nccl,cuda_ipc,nixl
#   chain_2gpu          latentray run: a 2-agent chain, one GPU each, kv over rdt/nccl
# Usage: bash scripts/gpu_check.sh [REPORT.json]  (default $OUT/gpu_check.json, else
# out/gpu_check.json). Each step runs under `timeout`; a failed step does not stop the
# others. Exits 1 if any step failed.
set -uo pipefail
REPORT=${1:-${OUT:+$OUT/gpu_check.json}}
REPORT=$(realpath -m "${REPORT:-out/gpu_check.json}")
cd "$(dirname "$0")/.."
export PY=${PYTHON:-python3} PYTHONUNBUFFERED=1
VPY=.venv/bin/python
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
: >"$WORK/steps.tsv"

# Seconds per step: 465 in all, so set-up plus every step fits in 8 minutes.
T_SETUP=180 T_TESTS=90 T_EQUIV=45 T_BENCH=90 T_CHAIN=60

skip() {  # NAME REASON
  echo "[gpu_check] $1: skipped: $2" >&2
  printf '%s\tskipped\t0\t%s\n' "$1" "$2" >>"$WORK/steps.tsv"
}

run_step() {  # NAME LIMIT_S COMMAND...; output in $WORK/NAME.log
  local name=$1 limit=$2 t0 rc ms status reason=""
  shift 2
  echo "[gpu_check] $name (at most ${limit} s)" >&2
  t0=$(date +%s%N)
  timeout -k 10 "$limit" "$@" </dev/null >"$WORK/$name.log" 2>&1
  rc=$?
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  case $rc in
    0) status=passed ;;
    124|137) status=failed reason="timed out after ${limit} s" ;;
    *) status=failed reason="exit code $rc" ;;
  esac
  printf '%s\t%s\t%d.%03d\t%s\n' "$name" "$status" $((ms / 1000)) $((ms % 1000)) "$reason" >>"$WORK/steps.tsv"
}

step_setup() {
  set -euo pipefail
  if [ ! -x .venv/bin/python ]; then
    # Where python3 already holds a CUDA torch, the venv sees its packages (after its own)
    # instead of downloading ~3 GB; a .pth line, as python3 may itself be a venv.
    if "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
      "$PY" -m venv .venv
      "$PY" -c 'import site; print("\n".join(site.getsitepackages()))' >"$(.venv/bin/python -c \
        'import sysconfig; print(sysconfig.get_paths()["purelib"])')/base_packages.pth"
    fi
    LATENTRAY_TORCH=cuda PYTHON="$PY" bash scripts/setup.sh
  fi
  .venv/bin/python scripts/gpu_check.py probe >"$WORK/env.json"
}
export -f step_setup
export WORK

run_step setup "$T_SETUP" bash -c step_setup
GPUS=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1])).get("gpus", 0))' "$WORK/env.json" 2>/dev/null || echo 0)
if [ "$(tail -n1 "$WORK/steps.tsv" | cut -f2)" != passed ]; then
  NO_GPU="set-up failed"
elif [ "$GPUS" -lt 1 ]; then
  NO_GPU="no CUDA GPU visible to torch"
else
  NO_GPU=""
fi

if [ -n "$NO_GPU" ]; then
  skip gpu_tests "$NO_GPU"
  skip kv_equivalence_bf16 "$NO_GPU"
  skip transport_rdt "$NO_GPU"
else
  run_step gpu_tests "$T_TESTS" "$VPY" -m pytest -q -m gpu -rs -p no:cacheprovider
  run_step kv_equivalence_bf16 "$T_EQUIV" "$VPY" -m pytest -q -s -rs -p no:cacheprovider \
    tests/test_kv_equivalence.py::test_smollm2_bf16_chain_on_cuda_matches_single_sequence
  run_step transport_rdt "$T_BENCH" "$VPY" benchmarks/transport.py --rdt nccl,cuda_ipc,nixl \
    --json "$WORK/transport.json"
fi

if [ -n "$NO_GPU" ]; then
  skip chain_2gpu "$NO_GPU"
elif [ "$GPUS" -lt 2 ]; then
  skip chain_2gpu "needs 2 GPUs, torch sees $GPUS"
else
  cat >"$WORK/chain.yaml" <<'EOF'
version: 1
name: gpu_chain
models:
  base: {ref: "builtin:smollm2-135m", dtype: bfloat16}
agents:
  planner:
    model: base
    role: "You are a planner. Plan how to solve the problem step by step.\nProblem: {question}"
    latent_steps: 8
    resources: {num_gpus: 1}
  judger:
    model: base
    role: "You are the judger. Use the team's reasoning to give the final answer.\nProblem: {question}"
    output: text
    max_new_tokens: 64
    resources: {num_gpus: 1}
topology: {type: chain, order: [planner, judger], memory: accumulate}
channels: {kind: kv, transport: rdt, rdt_backend: nccl}
run: {batch_size: 2, seed: 0}
EOF
  run_step chain_2gpu "$T_CHAIN" .venv/bin/latentray run "$WORK/chain.yaml" --quiet \
    -q "What is 17 + 25?" -q "Is 91 a prime number?" --output "$WORK/chain"
fi

"$PY" scripts/gpu_check.py report "$WORK" "$REPORT"
