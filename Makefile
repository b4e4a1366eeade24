# The README's two commands, serve and test (both create ./.venv on first use), plus the
# install step they share and lint.
.PHONY: serve test install lint

VENV_STAMP := .venv/.m1-mcp-installed

$(VENV_STAMP): pyproject.toml scripts/install.sh
	scripts/install.sh
	touch $@

install: $(VENV_STAMP)

# Run the MCP server on the embedded default model (Streamable HTTP on 127.0.0.1:8000).
serve: $(VENV_STAMP)
	.venv/bin/m1-mcp serve --transport streamable-http

# The whole test suite (what CI runs).
test: $(VENV_STAMP)
	.venv/bin/python -m pytest

lint: $(VENV_STAMP)
	.venv/bin/ruff check m1_mcp runtime kernels tests benchmarks scripts
