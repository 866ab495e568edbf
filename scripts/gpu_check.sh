#!/usr/bin/env bash
# One prepared run for a machine with an NVIDIA GPU (GPU time is scarce: run this once, read the
# output, commit what it wrote under data/benchmarks/). Each step has its own time limit, and a step
# that fails does not stop the others. Usage, from the repository root:
#
#   bash scripts/gpu_check.sh                # kernels and maml, at most 12 minutes
#   bash scripts/gpu_check.sh kernels        # steps 1, 2, 4: at most 4.5 minutes
#   bash scripts/gpu_check.sh maml           # steps 1, 3, 5, 6: at most 7.7 minutes
#   bash scripts/gpu_check.sh compile        # steps 1, 7: at most 5 minutes
#   bash scripts/gpu_check.sh speed          # steps 1, 8, 9: at most 9.5 minutes (run this first)
#
# Through the device tool (10 minutes a command, 15 of device time in all, machine start included):
# one call per group, each `PYTHON=python3 bash scripts/gpu_check.sh <group>` (the machine's python3
# holds PyTorch and Triton), with carry ["data/cache"] (the Omniglot cache, built here by any
# Omniglot test; the precision test needs it). What each step writes is copied to $OUT as soon as
# the step ends, so a call cut short still returns what it finished.
#
# Steps: (1) the card and versions; (2) the kernel tests on the card (compiled Triton kernels against
# their PyTorch references, forward and backward); (3) precision on the card: short Omniglot
# meta-training runs in float32, tf32 and bf16 must reach the same test accuracy
# (tests/test_precision.py; it needs Omniglot: $METALEARN_EDU_OMNIGLOT, or data/cache carried
# along, else it is skipped and says so); (4) the kernel benchmark (CUDA-event medians, eager and
# torch.compile references, copy bandwidth in the same run); (5) one second-order MAML
# meta-iteration on Omniglot 5-way 1-shot, meta-batch 32: the loop, vmap, and compiled vmap with
# CUDA graphs, in float32 (strict; tf32 and bf16 are in step 8; rows are written as they finish);
# (6) memory against inner
# steps with and without checkpointing; (7) what torch.compile made of the meta-gradient
# (python -m metalearn_edu.compile_report: graphs, graph breaks and their reasons, CUDA-graph skips,
# speed per compile mode, the most expensive kernels); (8) the compiled step as it now compiles
# (one graph: the H200's first "compiled" rows ran eagerly after a graph break, since fixed) in
# tf32 (which passed the accuracy test on the H200, and is PyTorch's default for convolutions) with
# Conv4's convolutions as conv2d and as matrix products, and bf16 with matrix products; (9) the
# compile report of the tf32 step with CUDA graphs, both convolutions (the most expensive kernels).
# Each compiled variant compiles in its own process (the issue measured 74 s to compile the step on
# an H200), and the float64 check before the timings compiles once more: the limits allow for it.
# Trimmed to fit (the step limits once added up to 19.5 minutes): step 5 times second order only
# and the compiled execution only with CUDA graphs (not torch.compile's default mode, not first
# order, not the sinusoid), 10 repeats instead of 20, and not channels-last (a no-op under vmap:
# see models/conv4.py); step 6 measures 1 and 8 inner steps (not 1, 2, 4, 8, 16) with 2 repeats.
# First run, on an H200 (torch 2.11, 2026-11-28): the precision test needed 73 s and memory at 8
# inner steps did not finish in 55 s, hence the limits of 120 and 100 s here.
# The tests run without the project's pytest options (-o addopts=): those need nbval, which the GPU
# machine does not have.
# Needs a CUDA build of PyTorch and triton in $PYTHON's environment (default .venv/bin/python).
# With $OUT set (the device tool), the JSON and logs are copied there too.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
WANTED=${*:-kernels maml}
for group in $WANTED; do
  case $group in
    kernels | maml | compile | speed) ;;
    *) echo "unknown group '$group': use kernels, maml, compile, speed or nothing (kernels and maml)" >&2 && exit 2 ;;
  esac
done
CARD=$($PY -c "import torch; print(torch.cuda.get_device_name().replace(' ', '_'))" 2>/dev/null) || {
  echo "no CUDA device: this script is for a GPU machine" >&2
  exit 2
}
OUT_DIR=data/benchmarks
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_check_${CARD}_${WANTED// /_}.log"
: >"$LOG"

wanted() { [[ " $WANTED " == *" $1 "* ]]; }
PYTEST=(env -u TRITON_INTERPRET "$PY" -m pytest -o addopts= -p no:cacheprovider)

step() {  # step <seconds> <title> <command...>
  local limit=$1 title=$2
  shift 2
  echo "=== $title" | tee -a "$LOG"
  local start=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
  echo "=== $title: exit ${PIPESTATUS[0]}, $((SECONDS - start)) s" | tee -a "$LOG"
  if [ -n "${OUT:-}" ]; then
    cp "$OUT_DIR"/*"${CARD}"* "$OUT"/ 2>/dev/null || true
  fi
}

step 20 "card and versions" bash -c "nvidia-smi --query-gpu=name,driver_version,memory.total \
  --format=csv && $PY -c 'import torch, triton; print(torch.__version__, torch.version.cuda, triton.__version__)'"
if wanted kernels; then
  step 120 "kernel tests on the card" "${PYTEST[@]}" -q -x tests/test_kernels_inner_update.py \
    tests/test_kernels_lstm_steps.py tests/test_kernels_bench.py tests/test_inner_checkpointing.py \
    tests/test_omniglot_device_sampling.py tests/test_training_sync.py
  step 120 "kernel benchmark" $PY -m metalearn_edu.kernels.bench
fi
if wanted maml; then
  step 120 "precision on the card: accuracy in float32, tf32, bf16" "${PYTEST[@]}" -q -rs \
    tests/test_precision.py -k cuda
  step 220 "MAML in float32, Omniglot 5w1s meta-batch 32, second order, CUDA graphs" $PY -m \
    metalearn_edu.bench --device cuda --workloads omniglot-5w1s --inner-steps 1 --orders second \
    --executions loop,vmap,compiled --compile-mode reduce-overhead \
    --precision float32 --repeats 10 --output "$OUT_DIR/maml_${CARD}.json"
  step 100 "memory against inner steps" $PY -m metalearn_edu.bench --device cuda \
    --workloads omniglot-20w5s --memory-vs-steps 1,8 --meta-batch 4 --repeats 2 \
    --output "$OUT_DIR/inner_checkpointing_${CARD}.json"
fi
if wanted compile; then
  step 280 "what torch.compile made of the meta-gradient (graphs, breaks, CUDA graphs, kernels)" \
    $PY -m metalearn_edu.compile_report --device cuda --output "$OUT_DIR/compile_report_${CARD}.json"
fi
if wanted speed; then
  step 420 "compiled MAML step, Omniglot 5w1s meta-batch 32, second order, CUDA graphs: tf32 (conv2d, matmul), bf16 (matmul)" \
    $PY -m metalearn_edu.bench --device cuda --workloads omniglot-5w1s --inner-steps 1 \
    --orders second --executions loop,vmap,compiled --compile-mode reduce-overhead \
    --precision tf32,tf32+matmul,bf16+matmul --repeats 10 --output "$OUT_DIR/maml_speed_${CARD}.json"
  step 130 "compile report, tf32 with CUDA graphs: conv2d and matmul convolutions" \
    $PY -m metalearn_edu.compile_report --device cuda --modes reduce-overhead --precision tf32 \
    --convs conv2d,matmul --repeats 10 --output "$OUT_DIR/compile_report_speed_${CARD}.json"
fi
