"""The layering, checked on the source: each package imports only what its layer may.

* ``m1_mcp`` (the MCP face) never imports vLLM: it talks to ``runtime.engine``;
* ``runtime`` (engine and model) never imports the MCP SDK or ``m1_mcp``;
* ``kernels`` imports nothing of ours.

Every import statement counts, including those inside functions (lazy imports).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> top-level modules it must not import
FORBIDDEN = {
    "m1_mcp": {"vllm"},
    "runtime": {"mcp", "m1_mcp"},
    "kernels": {"m1_mcp", "runtime", "mcp"},
}


def imported_modules(source: str) -> set[str]:
    """Top-level names of every module a source imports (absolute imports only)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def violations(package: str) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = imported_modules(path.read_text(encoding="utf-8")) & FORBIDDEN[package]
        found += [f"{path.relative_to(ROOT)} imports {name}" for name in sorted(bad)]
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_its_layer(package: str) -> None:
    assert violations(package) == []


def test_the_check_sees_lazy_and_dotted_imports() -> None:
    source = "def f():\n    from vllm.sampling_params import SamplingParams\nimport mcp.types\n"
    assert imported_modules(source) == {"vllm", "mcp"}
    assert imported_modules("from . import chat\nfrom .x import y\n") == set()
