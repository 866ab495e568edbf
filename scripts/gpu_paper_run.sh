#!/usr/bin/env bash
# The MAML paper's Omniglot 5-way 1-shot run (Finn et al. 2017: 60,000 meta-iterations, meta-batch
# 32, one inner step at alpha 0.4 in training, three at test) on one GPU, in pieces that fit the
# machines we are lent: each call trains for at most MINUTES and leaves a checkpoint under
# data/paper_runs/; the call that reaches 60,000 iterations evaluates the 600 test tasks and writes
# the result (accuracy with its 95% interval, the paper's 98.7 +- 0.4 beside it, the training time
# summed over all pieces, card and versions). Commit the folder after each piece, so that the next
# machine resumes where this one stopped. Usage, from the repository root:
#
#   bash scripts/gpu_paper_run.sh [MINUTES]        # default 8 (the device tool's 10-minute calls)
#
# Through the device tool: `PYTHON=python3 bash scripts/gpu_paper_run.sh 8` with timeout_s 600 and
# carry ["data/cache"] (the Omniglot cache; the GPU machine has no ../shared). The train command
# prints its speed (iterations per second, validation and checkpoints included); if it is far
# below `python -m metalearn_edu.bench`'s compiled step, `python -m metalearn_edu.bench_training`
# shows where the loop loses time.
#
# PRECISION (float32, tf32, bf16; default float32), CONV (conv2d or matmul: how Conv4 computes its
# convolutions, the same function; default conv2d) and COMPILE_MODE (default reduce-overhead: CUDA
# graphs) choose the arithmetic, the convolutions and the torch.compile mode; use tf32 or bf16 only where
# tests/test_precision.py passed on the same card (scripts/gpu_check.sh runs it). A run resumed
# with other settings is refused (the checkpoint keeps its configuration).
# Needs a CUDA build of PyTorch (and triton) in $PYTHON's environment (default .venv/bin/python);
# with $OUT set (the device tool), the checkpoint, result and log are copied there too.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
MINUTES=${1:-8}
if ! [[ $MINUTES =~ ^[0-9]+$ ]] || [ "$MINUTES" -lt 2 ]; then
  echo "MINUTES must be a whole number of minutes, at least 2, got '$MINUTES'" >&2
  exit 2
fi
PRECISION=${PRECISION:-float32}
COMPILE_MODE=${COMPILE_MODE:-reduce-overhead}
CONV=${CONV:-conv2d}
$PY -c "import torch; assert torch.cuda.is_available()" 2>/dev/null || {
  echo "no CUDA device: this script is for a GPU machine" >&2
  exit 2
}
RUN_DIR=data/paper_runs
NAME=maml-omniglot-5w1s-seed0
mkdir -p "$RUN_DIR"
LOG="$RUN_DIR/$NAME.log"

# stop training a minute before the limit: the last checkpoint and the evaluation need time too
timeout $((MINUTES * 60 + 120)) $PY -m metalearn_edu train --preset omniglot-5w1s --device cuda \
  --execution compiled --compile-mode "$COMPILE_MODE" --precision "$PRECISION" --conv "$CONV" \
  --checkpoint "$RUN_DIR/$NAME.pt" --resume --checkpoint-every 1000 \
  --time-limit $((MINUTES * 60 - 60)) --output "$RUN_DIR/$NAME.json" --no-progress \
  2>&1 | tee -a "$LOG"
STATUS=${PIPESTATUS[0]}
echo "=== exit $STATUS" | tee -a "$LOG"

if [ -n "${OUT:-}" ]; then
  cp "$RUN_DIR/$NAME".* "$OUT"/ 2>/dev/null || true
fi
exit "$STATUS"
