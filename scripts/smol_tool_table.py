"""Run the fixed smol-m1 tool calls (tests/e2e/smol_cases.py) against a real server over
Streamable HTTP and write what each returned to docs/smol-m1-tools.md.

    .venv/bin/python -m scripts.smol_tool_table [--out docs/smol-m1-tools.md]
    .venv/bin/python -m scripts.smol_tool_table --transcript multiply,doc-qa,...  # full JSON
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

from mcp import Client

from tests.e2e import harness, smol_cases

ROOT = Path(__file__).resolve().parents[1]


async def table(url: str) -> list[str]:
    rows = [
        "| case | tool | returned (shortened) | tokens out | finish | s | sensible |",
        "|---|---|---|---:|---|---:|---|",
    ]
    async with Client(url, read_timeout_seconds=600) as client:
        for label, tool, args in smol_cases.CASES:
            result, seconds = await smol_cases.run_case(client, tool, args)
            if result.is_error:
                rows.append(f"| {label} | {tool} | error: {result.content[0].text} | | | | no |")
                continue
            data = result.structured_content
            why = smol_cases.degeneracy(data) or "yes"
            usage = data["usage"]
            shown = smol_cases.brief(tool, data).replace("|", "\\|")
            rows.append(
                f"| {label} | {tool} | {shown} | {usage['completion_tokens']} | "
                f"{usage['finish_reason']} | {seconds:.1f} | {why} |"
            )
            print(label, tool, json.dumps(data)[:300], file=sys.stderr)
        card = json.loads((await client.read_resource("m1://model")).contents[0].text)
    head = [
        "# smol-m1 behind every tool",
        "",
        f"`{card['model']}` ({card['architecture']}, {card['num_layers']} softmax layers, "
        f"chat format {card['chat_format']}), {card['dtype']} on {card['device']}, vLLM "
        f"{card['vllm_version']}. The fixed calls of `tests/e2e/smol_cases.py`; "
        "written by `python -m scripts.smol_tool_table`. 'sensible' is the slow test's check: "
        "schema-valid, not empty, not one phrase repeated. The words are the model's own: a "
        "135M model is often wrong.",
        "",
    ]
    return head + rows


async def transcript(url: str, labels: list[str]) -> list[str]:
    """The chosen cases as request and full structured reply, for a reader to check."""
    chosen = {label: (tool, args) for label, tool, args in smol_cases.CASES if label in labels}
    out = []
    async with Client(url, read_timeout_seconds=600) as client:
        for label in labels:
            tool, args = chosen[label]
            result, seconds = await smol_cases.run_case(client, tool, args)
            reply = result.structured_content if not result.is_error else result.content[0].text
            out += [
                f"### {label}: tools/call {tool} ({seconds:.1f} s)",
                "",
                "```json",
                json.dumps(args, ensure_ascii=False, indent=1),
                "```",
                "",
                "```json",
                json.dumps(reply, ensure_ascii=False, indent=1),
                "```",
                "",
            ]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "smol-m1-tools.md")
    parser.add_argument(
        "--transcript",
        help="comma-separated case labels: print them in full instead of writing the table",
    )
    args = parser.parse_args()
    env = smol_cases.server_env()
    with tempfile.TemporaryDirectory() as tmp:
        srv = harness.HttpServer("streamable-http", Path(tmp) / "server.log", [], env)
        try:
            if args.transcript:
                print("\n".join(asyncio.run(transcript(srv.url, args.transcript.split(",")))))
                return 0
            lines = asyncio.run(table(srv.url))
        finally:
            srv.stop()
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
