"""Time a first start the way a new user meets it: `m1-mcp serve --transport streamable-http`
on the default settings, then one `solve_problem` call over Streamable HTTP with the MCP SDK's
client. Prints the checkpoint build, the engine start and the first answer, in seconds.

    .venv/bin/python -m scripts.first_answer [--fresh]   # --fresh: delete the cached smol-m1 first
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from mcp import Client

from m1_runtime.engine.checkpoints import SMOL_PRESET, default_cache_dir
from tests.e2e import harness


async def ask(url: str) -> tuple[dict, float]:
    started = time.monotonic()
    async with Client(url, read_timeout_seconds=900) as client:
        result = await client.call_tool("solve_problem", {"problem": "What is 17*3?"})
    return result.structured_content, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fresh", action="store_true")
    args = parser.parse_args()
    if args.fresh:
        for old in default_cache_dir().glob(f"{SMOL_PRESET}-*"):
            shutil.rmtree(old)
    env = {k: v for k, v in os.environ.items() if not k.startswith("M1_MCP_")}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        srv = harness.HttpServer("streamable-http", Path(tmp) / "server.log", [], env)
        listening = time.monotonic() - started
        try:
            answer, call_s = asyncio.run(ask(srv.url))
        finally:
            srv.stop()
        log = (Path(tmp) / "server.log").read_text(errors="replace")
    built = re.search(r"checkpoint \S+ ready after ([\d.]+) s", log)
    ready = re.search(r"engine: ready in ([\d.]+) s", log)
    print(
        json.dumps(
            {
                "listening_s": round(listening, 1),
                "checkpoint_s": float(built.group(1)) if built else None,
                "engine_ready_s": float(ready.group(1)) if ready else None,
                "first_answer_s": round(listening + call_s, 1),
                "answer": answer["answer"] if answer else None,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
