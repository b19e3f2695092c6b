#!/usr/bin/env bash
# engine/gpu_check.sh - ARMOR engines on one GPU: TensorRT fp16 (and ONNX Runtime CUDA EP) parity against
# PyTorch, then the engine benchmark (PyTorch CUDA eager vs ONNX Runtime vs TensorRT), then a few bf16 WoHG
# stage-2 training steps of armor-1b. Under 9 minutes on one H100/H200. Figures go to $OUT/gpu_check.json and
# $OUT/gpu_training.json if $OUT is set, else to engine/build/.
#
#   bash engine/gpu_check.sh            # PYTHON=/path/to/python to use another interpreter
#
# Needs a CUDA build of torch and the tensorrt package; onnxruntime-gpu is optional (CUDA EP parity). Nothing
# is downloaded: if tensorrt / onnxruntime-gpu do not import and a .whl/ folder exists at the repository root,
# they are installed from it offline (pip --no-index --find-links .whl). Exit codes: 0 ok, 1 parity failed,
# 3 refused (no CUDA, or tensorrt missing), 124 over the time budget.
set -uo pipefail
# From the repository root: the check finds benchmarks/bench_engine.py and writes engine/build relative to it.
cd "$(dirname "$0")/.."

PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
if [ -n "${OUT:-}" ]; then OUT_FILE="$OUT/gpu_check.json"; else OUT_FILE="engine/build/gpu_check.json"; fi

# 1. CUDA, as torch sees it.
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: refusing to run: no CUDA device visible to torch" \
         "($("$PY" -c 'import torch; print("torch", torch.__version__)' 2>&1 | tail -1))" >&2
    exit 3
fi

# 2. Imports first; offline wheels from .whl/ if something is missing.
has_trt() { "$PY" -c "import tensorrt" 2>/dev/null; }
has_cuda_ep() { "$PY" -c "import sys, onnxruntime as o; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())" 2>/dev/null; }
if [ -d .whl ]; then
    if ! has_trt; then
        "$PY" -m pip install --quiet --no-index --find-links .whl tensorrt || echo "gpu_check: no usable tensorrt wheel in .whl/" >&2
    fi
    if ! has_cuda_ep && ls .whl/onnxruntime_gpu-*.whl >/dev/null 2>&1; then
        # onnxruntime and onnxruntime-gpu share the `onnxruntime` package: swap, falling back to the CPU one.
        "$PY" -m pip install --quiet --no-index --find-links .whl onnxruntime-gpu \
            || echo "gpu_check: onnxruntime-gpu wheel did not install; CUDA EP checks are skipped" >&2
    fi
fi
if ! has_trt; then
    echo "gpu_check: refusing to run: the tensorrt package does not import (pip install tensorrt, or put its" \
         "wheels in .whl/)" >&2
    exit 3
fi
has_cuda_ep || echo "gpu_check: onnxruntime has no CUDAExecutionProvider; ONNX Runtime runs on the CPU EP" >&2

mkdir -p "$(dirname "$OUT_FILE")"
timeout 420 "$PY" -m armor_ab.engine.gpu_check --out "$OUT_FILE"
rc=$?
[ $rc -eq 124 ] && echo "gpu_check: over the 7-minute engine budget; partial figures in $OUT_FILE" >&2

# 3. Training: a few WoHG stage-2 steps of a random-initialised armor-1b in bf16 (step time, tokens/s, peak
#    memory next to the estimate). At most 90 s; figures in gpu_training.json beside gpu_check.json.
TRAIN_FILE="$(dirname "$OUT_FILE")/gpu_training.json"
timeout 90 "$PY" -m armor_ab.training.gpu_stage --out "$TRAIN_FILE"
trc=$?
[ $trc -eq 124 ] && echo "gpu_check: the training stage passed its 90 s budget" >&2
[ $rc -eq 0 ] && rc=$trc
exit $rc
