#!/usr/bin/env bash
# One prepared run for a machine with an NVIDIA GPU (GPU time is scarce: run this once, read the
# output, commit what it wrote under data/benchmarks/). Each step has its own time limit, and a step
# that fails does not stop the others. Usage, from the repository root:
#
#   bash scripts/gpu_check.sh            # about 8-10 minutes on an H100/H200
#
# Steps: (1) the card and versions; (2) the kernel tests on the card (compiled Triton kernels against
# their PyTorch references, forward and backward); (3) the kernel benchmark (CUDA-event medians,
# eager and torch.compile references, copy bandwidth in the same run); (4) one MAML meta-iteration on
# Omniglot 5-way 1-shot, meta-batch 32, second and first order: loop, vmap, compiled vmap and compiled
# vmap with CUDA graphs; (5) memory against inner steps with and without checkpointing.
# Needs a CUDA build of PyTorch and triton in $PYTHON's environment (default .venv/bin/python).
# With $OUT set (the device tool), the JSON and logs are copied there too.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
CARD=$($PY -c "import torch; print(torch.cuda.get_device_name().replace(' ', '_'))" 2>/dev/null) || {
  echo "no CUDA device: this script is for a GPU machine" >&2
  exit 2
}
OUT_DIR=data/benchmarks
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_check_${CARD}.log"
: >"$LOG"

step() {  # step <seconds> <title> <command...>
  local limit=$1 title=$2
  shift 2
  echo "=== $title" | tee -a "$LOG"
  local start=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
  echo "=== $title: exit ${PIPESTATUS[0]}, $((SECONDS - start)) s" | tee -a "$LOG"
}

step 30 "card and versions" bash -c "nvidia-smi --query-gpu=name,driver_version,memory.total \
  --format=csv && $PY -c 'import torch, triton; print(torch.__version__, torch.version.cuda, triton.__version__)'"
step 240 "kernel tests on the card" env -u TRITON_INTERPRET $PY -m pytest -q -x \
  tests/test_kernels_inner_update.py tests/test_kernels_lstm_steps.py tests/test_kernels_bench.py \
  tests/test_inner_checkpointing.py
step 180 "kernel benchmark" $PY -m metalearn_edu.kernels.bench
step 300 "MAML executions, Omniglot 5w1s meta-batch 32" $PY -m metalearn_edu.bench --device cuda \
  --workloads omniglot-5w1s --inner-steps 1 --executions loop,vmap,compiled --repeats 20 \
  --output "$OUT_DIR/maml_${CARD}.json"
step 240 "compiled with CUDA graphs" $PY -m metalearn_edu.bench --device cuda \
  --workloads omniglot-5w1s,sinusoid --inner-steps 1 --executions loop,compiled \
  --compile-mode reduce-overhead --repeats 20 --output "$OUT_DIR/maml_${CARD}_cudagraphs.json"
step 180 "memory against inner steps" $PY -m metalearn_edu.bench --device cuda \
  --workloads omniglot-20w5s --memory-vs-steps 1,2,4,8,16 --meta-batch 4 --repeats 3 \
  --output "$OUT_DIR/inner_checkpointing_${CARD}.json"

if [ -n "${OUT:-}" ]; then
  cp "$OUT_DIR"/*"${CARD}"* "$OUT"/ 2>/dev/null || true
fi
