# The README's two commands, serve and test (both create ./.venv on first use), plus the
# install step they share and lint.
.PHONY: serve test test-fast test-vllm026 install lint

VENV_STAMP := .venv/.m1-mcp-installed
VENV26_STAMP := .venv26/.m1-mcp-installed
# The model, engine and vLLM-server tests that must pass on every supported vLLM (0.26 here,
# 0.32 in .venv).
VLLM_MODEL_TESTS := tests/runtime/test_vllm_compat.py tests/runtime/test_vllm_model.py \
	tests/runtime/test_engine.py tests/runtime/test_openai_parsers.py tests/e2e/test_vllm_serve.py \
	tests/runtime/test_transformers_parity.py tests/runtime/test_weight_loading.py \
	tests/runtime/test_smol_m1.py

$(VENV_STAMP): pyproject.toml scripts/install.sh
	scripts/install.sh
	touch $@

$(VENV26_STAMP): $(VENV_STAMP) scripts/install_vllm026.sh
	scripts/install_vllm026.sh
	touch $@

install: $(VENV_STAMP)

# Run the MCP server on the embedded default model (Streamable HTTP on 127.0.0.1:8000).
serve: $(VENV_STAMP)
	.venv/bin/m1-mcp serve --transport streamable-http

# Lint (ruff, the type checker), the whole test suite on vLLM 0.32, then the model tests on vLLM 0.26 (what CI runs).
test: $(VENV_STAMP) $(VENV26_STAMP)
	$(MAKE) lint
	.venv/bin/python -m pytest
	$(MAKE) test-vllm026

# Lint and every test that starts no engine and no server (under a minute).
test-fast: $(VENV_STAMP)
	$(MAKE) lint
	.venv/bin/python -m pytest -m "not slow and not gpu"

test-vllm026: $(VENV26_STAMP)
	.venv26/bin/python -m pytest $(VLLM_MODEL_TESTS)

LINTED := m1_mcp runtime kernels tests benchmarks scripts
lint: $(VENV_STAMP)
	.venv/bin/ruff check $(LINTED)
	.venv/bin/ruff format --check $(LINTED)
	.venv/bin/mypy
