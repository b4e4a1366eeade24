"""Calls longer than a client waits: progress that never goes quiet, and background jobs.

One server with a single generation slot, so a second call really waits in the queue (the
phase in which the engine itself says nothing).
"""

from __future__ import annotations

import time

import anyio
import pytest
from mcp import Client

from tests.e2e import harness

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

# Desktop clients give up on a call after about 60 s; others reset their timeout on progress
# but give up after some silence. This client gives up after 15 s without a notification.
SILENCE_LIMIT_S = 15.0
LONG_CHAT = {"messages": [{"role": "user", "content": "Go on."}], "max_tokens": 6000}
SECOND_CHAT = {"messages": [{"role": "user", "content": "And then?"}], "max_tokens": 4000}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("long")
    root = harness.make_file_root(tmp / "root")
    env = harness.server_env(
        M1_MCP_MAX_CONCURRENT="1", M1_MCP_MAX_QUEUE="4", M1_MCP_MAX_MAX_TOKENS="8192"
    )
    with harness.running_http_server(
        "streamable-http", tmp, ["--file-root", str(root)], env
    ) as srv:
        srv.root = root
        yield srv


async def test_a_queued_call_never_goes_quiet(server) -> None:
    """A long chat holds the only slot; a second call queues behind it. The second call's
    client gives up after SILENCE_LIMIT_S without progress: it must still complete."""
    async with Client(server.url, read_timeout_seconds=600) as client:
        await client.call_tool("solve_problem", {"problem": "1+1?", "max_tokens": 16})  # loaded
        first_token = anyio.Event()
        gaps: list[float] = []
        last = time.monotonic()

        async def on_first(progress: float, total: float | None, message: str | None) -> None:
            if total == LONG_CHAT["max_tokens"] and progress > 0:
                first_token.set()

        async def on_second(progress: float, total: float | None, message: str | None) -> None:
            nonlocal last
            now = time.monotonic()
            gaps.append(now - last)
            last = now

        async def watchdog(scope: anyio.CancelScope) -> None:
            while True:
                await anyio.sleep(0.5)
                if time.monotonic() - last > SILENCE_LIMIT_S:
                    scope.cancel()  # the client gives up
                    return

        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: client.call_tool("chat", LONG_CHAT, progress_callback=on_first))
            with anyio.fail_after(120):
                await first_token.wait()
            started = last = time.monotonic()
            with anyio.CancelScope() as gave_up:
                tg.start_soon(watchdog, gave_up)
                # Queued behind the first chat, then long itself: about a minute in all here.
                result = await client.call_tool("chat", SECOND_CHAT, progress_callback=on_second)
            waited = time.monotonic() - started
            tg.cancel_scope.cancel()
    assert not gave_up.cancelled_caught, f"silent for over {SILENCE_LIMIT_S} s: gaps {gaps}"
    assert not result.is_error, result.content[0].text
    # The call must have lasted long enough for the silence limit to matter.
    assert waited > 2 * SILENCE_LIMIT_S, f"only {waited:.1f} s: lengthen the chats"
    print(f"queued call: {waited:.1f} s, longest silence {max(gaps):.1f} s")
    assert max(gaps) < SILENCE_LIMIT_S, gaps


async def test_background_jobs(server) -> None:
    async with Client(server.url, read_timeout_seconds=300) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}

        # Bad input fails start_job itself, with the tool's own reason.
        bad = await client.call_tool(
            "start_job", {"tool": "solve_problem", "arguments": {"problem": "  "}}
        )
        assert bad.is_error and "the problem is empty" in bad.content[0].text
        unknown = await client.call_tool("job_result", {"job_id": "0" * 16, "wait_s": 0})
        assert unknown.is_error and "no job" in unknown.content[0].text

        # A long job: progress while working, then cancelled, leaving nothing running.
        started = await client.call_tool("start_job", {"tool": "chat", "arguments": LONG_CHAT})
        harness.check_result_against_schema(started, tools["start_job"].output_schema)
        job_id = started.structured_content["job_id"]
        status = started.structured_content
        for _ in range(30):
            polled = await client.call_tool("job_result", {"job_id": job_id, "wait_s": 1})
            status = polled.structured_content
            if (status["progress"] or 0) >= 1:
                break
        assert status["status"] == "working" and status["total"] == LONG_CHAT["max_tokens"]
        page = await client.read_resource(f"m1://jobs/{job_id}")
        assert f'"job_id": "{job_id}"' in page.contents[0].text
        cancelled = await client.call_tool("cancel_job", {"job_id": job_id})
        assert cancelled.structured_content["status"] == "cancelled"
        with anyio.fail_after(20):
            while True:
                stats = await harness.read_stats(client)
                if stats["in_flight"] == 0 and stats["engine_unfinished_requests"] == 0:
                    break
                await anyio.sleep(0.2)

        # A short job runs to completion; its result is the tool's own structured result.
        done = await harness.run_job(client, tools, "review_code", {"code": harness.SAMPLE_CODE})
        assert done["status"] == "completed", done
        harness.check_structured(done["result"], tools["review_code"].output_schema)
