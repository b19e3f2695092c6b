#!/usr/bin/env bash
# engine/gpu_check.sh - ARMOR on one GPU in at most 5 minutes: copy bandwidth; armor-demo and a random-initialised
# armor-1b (bf16) on PyTorch eager and on torch-cuda (CUDA graphs): text tokens/s and images/s with guidance at
# batch 1 and 16, pages/s, decode bandwidth against the memory roofline, peak memory; TensorRT where tensorrt
# imports; a few bf16 WoHG training steps of armor-1b. Each stage has its own time cap and the JSON is rewritten
# after each, so a run cut off anywhere still reports.
#
#   bash engine/gpu_check.sh                 # on the GPU machine; PYTHON=... for another interpreter
#   bash engine/gpu_check.sh --dry-run       # here, on a CPU (make test runs it): imports, shapes, arithmetic,
#                                            # the carried wheels; no CUDA needed, exit 0
#   bash engine/gpu_check.sh --stages armor-1b --cap armor-1b=240 --torch-cuda-compile off   # a focused rerun
#
# Interpreter: $PYTHON, else .venv/bin/python, else the machine's python3. Carried wheels: if .whl/ holds wheels
# (bash engine/fetch_gpu_wheels.sh fetches engine/gpu_wheels.txt), they are installed offline into a temporary
# --target that goes first on PYTHONPATH; nothing is installed into the machine's own environment and nothing
# is downloaded. Figures: $OUT/gpu_check.json, gpu_training.json and gpu_check.log if $OUT is set, else in
# engine/build/. Exit codes: 0 ok, 1 a parity check failed, 2 a stage raised an error, 3 refused (no CUDA),
# 124 over the time budget (a stage ran out of its cap; its partial figures are in the JSON).
set -uo pipefail
# From the repository root: the check finds armor_ab, benchmarks/ and engine/ relative to it.
cd "$(dirname "$0")/.." || exit 3
START=$SECONDS
BUDGET="${GPU_CHECK_BUDGET:-300}"

DRY=0
ARGS=()
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY=1 ;;
        -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
        *) ARGS+=("$arg") ;;
    esac
done

PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3 || true)"
if [ -z "$PY" ]; then
    echo "gpu_check: refusing to run: no python3 found" >&2
    exit 3
fi
export PYTHONUNBUFFERED=1
OUT_DIR="${OUT:-engine/build}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [ "$DRY" -eq 1 ]; then
    timeout -k 5 300 "$PY" -m armor_ab.engine.gpu_check --dry-run --out engine/build/gpu_check_dry.json \
        ${ARGS[@]+"${ARGS[@]}"}
    exit $?
fi

# 1. CUDA, as the interpreter's torch sees it (before anything is installed or written).
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: refusing to run: no CUDA device visible to torch" \
         "($("$PY" -c 'import torch; print("torch", torch.__version__)' 2>&1 | tail -1))" >&2
    exit 3
fi

# 2. The carried wheels, offline, into a temporary --target first on PYTHONPATH.
if compgen -G ".whl/*.whl" >/dev/null; then
    SITE="$(mktemp -d "${TMPDIR:-/tmp}/armor-gpu-site.XXXXXX")"
    trap 'rm -rf "$SITE"' EXIT
    if "$PY" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check \
            --upgrade --target "$SITE" .whl/*.whl; then
        export PYTHONPATH="$SITE:$PYTHONPATH"
        ARGS+=(--carried-site "$SITE")
        wheels=(.whl/*.whl)
        echo "gpu_check: ${#wheels[@]} carried wheels installed into $SITE ($((SECONDS - START)) s)" >&2
    else
        echo "gpu_check: installing the carried wheels failed; going on with the machine's own packages" >&2
    fi
else
    echo "gpu_check: no .whl/ (bash engine/fetch_gpu_wheels.sh, then carry .whl): the machine's own packages" >&2
fi

# 3. The stages, inside what is left of the budget.
mkdir -p "$OUT_DIR"
LEFT=$((BUDGET - (SECONDS - START)))
timeout -k 5 "$LEFT" "$PY" -m armor_ab.engine.gpu_check --out "$OUT_DIR/gpu_check.json" \
    --budget-s $((LEFT - 8)) ${ARGS[@]+"${ARGS[@]}"} 2>&1 | tee "$OUT_DIR/gpu_check.log"
rc=${PIPESTATUS[0]}
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "gpu_check: over the ${BUDGET} s budget; partial figures in $OUT_DIR/gpu_check.json" >&2
    rc=124
fi
exit "$rc"
