"""The layering, checked on the source: each folder imports only what its layer may.

* ``m1_mcp`` (the MCP face) never imports vLLM or the model side: it talks to the engine;
* ``runtime/model`` (what vLLM loads in every process) never imports the engine or MCP;
* ``runtime/chat`` (formats shared by both sides) imports neither vLLM nor the engine;
* ``runtime/engine`` (the server's engine) never imports MCP or ``m1_mcp``;
* ``kernels`` imports nothing of ours.

Our packages are imported by their installed names (``m1_runtime``, ``m1_kernels``), never by
folder name. Every import statement counts, including those inside functions (lazy imports).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Folder names that are not import names: importing them only works from a checkout.
FOLDER_NAMES = {"runtime", "kernels"}
# folder -> dotted module prefixes it must not import
FORBIDDEN = {
    "m1_mcp": {"vllm", "m1_runtime.model", "m1_kernels"} | FOLDER_NAMES,
    "runtime/model": {"mcp", "m1_mcp", "m1_runtime.engine"} | FOLDER_NAMES,
    "runtime/chat": {"vllm", "torch", "mcp", "m1_mcp", "m1_runtime.engine", "m1_runtime.model"}
    | FOLDER_NAMES,
    "runtime/engine": {"mcp", "m1_mcp"} | FOLDER_NAMES,
    "kernels": {"m1_mcp", "m1_runtime", "mcp", "vllm"} | FOLDER_NAMES,
}


def imported_modules(source: str) -> set[str]:
    """Dotted names of every module a source imports (absolute imports only); for
    ``from a.b import c`` both ``a.b`` and ``a.b.c`` count, since ``c`` may be a module."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def forbidden_in(source: str, forbidden: set[str]) -> list[str]:
    return sorted(
        name
        for name in imported_modules(source)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    )


def violations(folder: str) -> list[str]:
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        bad = forbidden_in(path.read_text(encoding="utf-8"), FORBIDDEN[folder])
        found += [f"{path.relative_to(ROOT)} imports {name}" for name in bad]
    return found


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_folder_respects_its_layer(folder: str) -> None:
    assert violations(folder) == []


def test_the_check_sees_lazy_and_dotted_imports() -> None:
    source = "def f():\n    from vllm.sampling_params import SamplingParams\nimport mcp.types\n"
    assert "vllm.sampling_params" in forbidden_in(source, FORBIDDEN["m1_mcp"])
    assert forbidden_in("from m1_runtime import engine\n", FORBIDDEN["runtime/model"]) == [
        "m1_runtime.engine"
    ]
    assert forbidden_in("from . import chat\nfrom .x import y\n", {"chat", "x"}) == []


def test_a_tool_importing_vllm_is_caught(tmp_path: Path) -> None:
    tool = "from m1_runtime.engine import Engine\n\n\ndef run():\n    import vllm\n"
    assert forbidden_in(tool, FORBIDDEN["m1_mcp"]) == ["vllm"]
