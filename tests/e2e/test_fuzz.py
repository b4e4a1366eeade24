"""Fuzz: 2,000 generated hostile tool calls against the real server over Streamable HTTP.

Every reply must be explained (`fuzz.verdict`): a schema-valid result, or an error that says
what was wrong. The server must stay up, answer a valid call afterwards, and leave nothing
running in the engine. The figures go to the test's log (`-s` shows them) and, with
`M1_FUZZ_RESULTS=path.json`, to a JSON file (benchmarks/results/fuzz.json holds a run).
"""

from __future__ import annotations

import collections
import json
import os
import time
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from tests.e2e import fuzz, harness

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

CASES = 2000
CONCURRENCY = 16
# One call's limit: a hostile but valid call generates with the tools' small test budgets.
CALL_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("fuzz")
    root = harness.make_file_root(tmp / "root")
    env = harness.server_env(M1_MCP_MAX_CONCURRENT="16", M1_MCP_MAX_QUEUE="64")
    with harness.running_http_server(
        "streamable-http", tmp, ["--file-root", str(root)], env
    ) as srv:
        srv.root = root
        yield srv


async def test_hostile_calls_are_all_explained(server) -> None:
    problems: list[str] = []
    outcomes: collections.Counter[str] = collections.Counter()
    started = time.monotonic()
    async with Client(server.url, read_timeout_seconds=CALL_TIMEOUT_S) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        schemas = {name: t.input_schema for name, t in tools.items()}
        # The job readers too (with an id no job has); start_job is left out: the jobs it
        # started would still be running when the test checks that nothing is.
        base = harness.tool_calls(server.root) | {
            "job_result": {"job_id": "0" * 16, "wait_s": 0},
            "cancel_job": {"job_id": "0" * 16},
        }
        cases = fuzz.generate(base, schemas, CASES, seed=1234)
        assert len(cases) == CASES
        limiter = anyio.Semaphore(CONCURRENCY)

        async def one(case: fuzz.Case) -> None:
            async with limiter:
                try:
                    with anyio.fail_after(CALL_TIMEOUT_S):
                        result = await client.call_tool(case.tool, case.args)
                except MCPError as exc:
                    # A protocol-level refusal (unknown tool, malformed arguments) is
                    # explained when it is not an internal error and carries a message.
                    code = getattr(exc, "code", None) or getattr(exc.error, "code", None)
                    if code == -32603 or not str(exc).strip():
                        problems.append(f"{case.tool} [{case.what}]: JSON-RPC {code} {exc}")
                    outcomes["protocol error"] += 1
                    return
                except TimeoutError:
                    problems.append(f"{case.tool} [{case.what}]: no reply in {CALL_TIMEOUT_S} s")
                    return
                text = result.content[0].text if result.content else ""
                why = fuzz.verdict(case.tool, result.is_error, text)
                if why:
                    problems.append(f"{case.tool} [{case.what}]: {why}")
                elif result.is_error:
                    outcomes["refused"] += 1
                else:
                    try:
                        harness.check_result_against_schema(result, tools[case.tool].output_schema)
                    except Exception as exc:
                        problems.append(f"{case.tool} [{case.what}]: invalid result {exc}")
                    outcomes["answered"] += 1

        async with anyio.create_task_group() as tg:
            for case in cases:
                tg.start_soon(one, case)

        # Still serving, and nothing left running.
        await harness.call_every_tool(client, server.root)
        stats = await harness.read_stats(client)
    assert server.proc.poll() is None, "the server died"
    figures = {
        "cases": CASES,
        "concurrency": CONCURRENCY,
        "seconds": round(time.monotonic() - started, 1),
        "outcomes": dict(outcomes),
        "unexplained": len(problems),
        "engine_unfinished_requests": stats["engine_unfinished_requests"],
        "in_flight": stats["in_flight"],
    }
    print(json.dumps(figures))
    if os.environ.get("M1_FUZZ_RESULTS"):
        Path(os.environ["M1_FUZZ_RESULTS"]).write_text(json.dumps(figures, indent=2) + "\n")
    assert problems == [], "\n".join(problems[:30])
    assert stats["in_flight"] == 0 and stats["engine_unfinished_requests"] == 0, stats
