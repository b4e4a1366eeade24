"""Concurrency that batches: N calls one after another against N calls at once, one engine.

Starts one engine (tiny-m1, float32, `max_concurrent` left to the engine, as a server starts by
default), warms it up, then for each N in --ns runs N solve_problem-like generations
sequentially and then N concurrently, and prints a markdown table (N, sequential s,
concurrent s, speedup). Both sides of a row run the same N requests (same prompts, same seeds,
same token budget) back to back in this one run.

`--through engine` (default) calls m1_runtime.engine.Engine directly; `--through mcp` starts the
real `m1-mcp serve --transport streamable-http` and calls its `solve_problem` tool with the
SDK's client, so the protocol, the tool and admission are in the measurement too.

    flock /tmp/m1-heavy.lock .venv/bin/python -m benchmarks.concurrency \\
        [--through engine|mcp] [--ns 1 4 8 16 32] [--max-tokens 128] [--out benchmarks/results]

Writes <out>/concurrency-<device>[-mcp].json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

PROBLEM = "A train leaves at 9:40 and arrives at 13:05. How long is the trip, in minutes? #{i}"

Call = Callable[[int], Awaitable[int]]  # request i -> completion tokens


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


async def timed_sequential(call: Call, n: int) -> tuple[float, int]:
    started = time.monotonic()
    tokens = 0
    for i in range(n):
        tokens += await call(i)
    return time.monotonic() - started, tokens


async def timed_concurrent(call: Call, n: int) -> tuple[float, int]:
    counts: list[int] = []

    async def one(i: int) -> None:
        counts.append(await call(i))

    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    return time.monotonic() - started, sum(counts)


async def curve(call: Call, ns: list[int]) -> list[dict[str, Any]]:
    await call(0)  # warm-up: first-request costs stay out of the numbers
    rows = []
    for n in ns:
        seq_s, seq_tokens = await timed_sequential(call, n)
        con_s, con_tokens = await timed_concurrent(call, n)
        row = {
            "n": n,
            "sequential_s": round(seq_s, 2),
            "concurrent_s": round(con_s, 2),
            "speedup": round(seq_s / con_s, 2),
            "sequential_tokens": seq_tokens,
            "concurrent_tokens": con_tokens,
            "concurrent_tokens_per_s": round(con_tokens / con_s, 1),
        }
        print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)
    return rows


async def through_engine(args: argparse.Namespace) -> dict[str, Any]:
    from m1_runtime.chat.m1 import Message
    from m1_runtime.engine import Engine, EngineConfig, GenerationRequest, Sampling

    engine = Engine(
        EngineConfig(
            model="tiny-m1",
            dtype="float32",
            max_model_len=args.max_model_len,
            max_queue=max(args.ns),
        )
    )

    async def call(i: int) -> int:
        gen = await engine.generate(
            GenerationRequest(
                messages=[Message(role="user", content=PROBLEM.format(i=i))],
                max_tokens=args.max_tokens,
                thinking=True,
                sampling=Sampling(seed=i),
            )
        )
        return gen.completion_tokens

    try:
        await engine.start()
        if not engine.ready:
            raise RuntimeError(f"engine failed: {engine.error}")
        limit = engine.stats()["max_concurrent"]
        rows = await curve(call, args.ns)
    finally:
        await engine.stop()
    return {"max_concurrent": limit, "rows": rows}


async def through_mcp(args: argparse.Namespace) -> dict[str, Any]:
    from mcp import Client

    from tests.e2e import harness

    env = harness.server_env(
        M1_MCP_MAX_MODEL_LEN=str(args.max_model_len),
        M1_MCP_MAX_QUEUE=str(max(args.ns)),
        M1_MCP_DTYPE="float32",
    )
    env.pop("M1_MCP_MAX_CONCURRENT", None)  # the default: what the engine batches
    with tempfile.TemporaryDirectory() as tmp:
        srv = harness.HttpServer("streamable-http", Path(tmp) / "server.log", [], env)
        try:
            async with Client(srv.url, read_timeout_seconds=1800) as client:

                async def call(i: int) -> int:
                    result = await client.call_tool(
                        "solve_problem",
                        {
                            "problem": PROBLEM.format(i=i),
                            "show_steps": True,
                            "max_tokens": args.max_tokens,
                        },
                    )
                    if result.is_error:
                        raise RuntimeError(result.content[0].text)
                    return int(result.structured_content["usage"]["completion_tokens"])

                await call(0)  # waits for the engine to load
                limit = (await harness.read_stats(client))["max_concurrent"]
                rows = await curve(call, args.ns)
        finally:
            srv.stop()
    return {"max_concurrent": limit, "rows": rows}


def device() -> str:
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# Concurrency: N sequential vs N concurrent calls ({result['through']})",
        "",
        f"tiny-m1, float32, {result['device']} ({result['cpus']} CPUs), "
        f"{result['max_tokens']} new tokens a call (thinking on), context "
        f"{result['max_model_len']}; admission limit from the engine: "
        f"{result['max_concurrent']} at once. Load average before/after: "
        f"{result['load_before']} / {result['load_after']}.",
        "",
        "| N | sequential s | concurrent s | speedup | tokens (seq / conc) | conc tokens/s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['n']} | {r['sequential_s']:.2f} | {r['concurrent_s']:.2f} | "
            f"{r['speedup']:.2f}x | {r['sequential_tokens']} / {r['concurrent_tokens']} | "
            f"{r['concurrent_tokens_per_s']:.1f} |"
        )
    lines += ["", f"Command: `{result['command']}`", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--through", choices=("engine", "mcp"), default="engine")
    parser.add_argument("--ns", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    load_before = load()
    fn = through_engine if args.through == "engine" else through_mcp
    measured = anyio.run(fn, args)
    result = {
        "through": args.through,
        "device": device(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "max_tokens": args.max_tokens,
        "max_model_len": args.max_model_len,
        "load_before": load_before,
        "load_after": load(),
        "command": "flock /tmp/m1-heavy.lock .venv/bin/python -m benchmarks.concurrency "
        + " ".join(sys.argv[1:]),
        **measured,
    }
    table = markdown(result)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"concurrency-{result['device']}" + ("-mcp" if args.through == "mcp" else "")
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
