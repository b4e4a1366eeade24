#!/usr/bin/env bash
# The GPU suite on a CUDA machine (the H200 through ../shared/gpu-kit): installs this checkout
# without touching its dependencies, then runs `pytest -m gpu tests/gpu`. Results go to $OUT
# (default ./gpu-results): gpu-suite.log, gpu-junit.xml and gpu-results.jsonl (one line per
# measurement). With the kit: bash .gpukit/pN/install.sh for every part, then this script.
#   usage: scripts/gpu_check.sh [pytest args...]     (e.g. -k exactness)
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHONPATH:-}" ]; then
    for env in .gpukit/p*/env.sh; do [ -f "$env" ] && source "$env" && break; done
fi
OUT=${OUT:-$PWD/gpu-results}
mkdir -p "$OUT"
export GPU_RESULTS="$OUT/gpu-results.jsonl" PYTHONUNBUFFERED=1
rm -f "$GPU_RESULTS"
python3 -m pip install -q --no-deps --no-build-isolation -e . >&2 || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2
python3 -m pytest -m gpu tests/gpu -p no:cacheprovider -q -rA --durations=0 \
    --junitxml="$OUT/gpu-junit.xml" "$@" 2>&1 | tee "$OUT/gpu-suite.log"
exit "${PIPESTATUS[0]}"
