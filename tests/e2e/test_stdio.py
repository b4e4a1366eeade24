"""The real server over stdio: the SDK client spawns `m1-mcp serve` as MCP clients do."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
from mcp import Client, StdioServerParameters

from tests.e2e import harness

pytestmark = [pytest.mark.slow]


@pytest.mark.anyio
async def test_session_tools_progress_cancel_and_bad_input(tmp_path) -> None:
    root = harness.make_file_root(tmp_path / "root")
    params = StdioServerParameters(
        command=harness.M1_MCP,
        args=["serve", "--file-root", str(root)],
        env=harness.server_env(),
    )
    async with Client(params, read_timeout_seconds=300) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}

        # The first call waits for the model and says so through progress.
        seen: list[tuple[float, float | None, str | None]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append((progress, total, message))

        first = await client.call_tool(
            "solve_problem", {"problem": "2+3?", "max_tokens": 200}, progress_callback=on_progress
        )
        harness.check_result_against_schema(first, tools["solve_problem"].output_schema)
        assert any(m and "loading the model" in m for _, _, m in seen)
        assert sum(1 for _, total, _ in seen if total == 200) >= 2

        await harness.call_every_tool(client, root)
        (root / "notes.md").write_text("# Q3\nSales rose. Costs fell. Hiring paused.\n")
        insights = await client.call_tool(
            "analyze_document", {"path": "notes.md", "mode": "insights"}
        )
        harness.check_result_against_schema(insights, tools["analyze_document"].output_schema)
        assert insights.structured_content["insights"] is not None
        assert insights.structured_content["summary"] is None

        # Cancel mid-generation: the engine drops the request.
        stats = await harness.cancel_long_chat(client, start_timeout=60)
        assert stats["cancelled"] >= 1

        for name, args, needle in harness.BAD_CALLS:
            r = await client.call_tool(name, args)
            assert r.is_error and needle in r.content[0].text, (needle, r.content)
        ok = await client.call_tool("solve_problem", {"problem": "1+1", "max_tokens": 16})
        assert not ok.is_error


def _send(proc: subprocess.Popen, message: dict) -> None:
    proc.stdin.write((json.dumps(message) + "\n").encode())
    proc.stdin.flush()


def _raw_server(log) -> subprocess.Popen:
    """`m1-mcp serve` on stdio, spoken to with raw JSON-RPC lines (`_send`, `_receive`)."""
    return subprocess.Popen(
        [harness.M1_MCP, "serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        env=harness.server_env(),
    )


def _receive(proc: subprocess.Popen) -> dict:
    line = proc.stdout.readline()
    assert line, "server closed stdout"
    return json.loads(line)


def test_initialize_is_fast_while_loading_and_eof_leaves_no_engine_process(tmp_path) -> None:
    log = (tmp_path / "server.log").open("wb")
    proc = _raw_server(log)
    try:
        t0 = time.monotonic()
        _send(proc, harness.initialize_request("raw"))
        init = _receive(proc)
        t_init = time.monotonic() - t0
        assert init["result"]["serverInfo"]["name"] == "m1-mcp"
        _send(proc, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        t1 = time.monotonic()
        _send(proc, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        listed = _receive(proc)
        t_list = time.monotonic() - t1
        assert len(listed["result"]["tools"]) == 9  # six tools and three job tools
        # Python start-up counts in t_init; the model itself loads for tens of seconds.
        assert t_init < 5.0 and t_list < 1.0, (t_init, t_list)

        # Wait until the engine processes exist (the model is loading), then close stdin.
        deadline = time.monotonic() + 60
        while not harness.descendants(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3.0)
        children = harness.descendants(proc.pid)
        assert children, "the engine should be starting in child processes"
        proc.stdin.close()
        code = proc.wait(timeout=60)
        assert code == 0
        assert harness.wait_gone(children, timeout=10) == []
        # Nothing but protocol messages reached stdout.
        rest = proc.stdout.read().decode()
        assert all(json.loads(line) for line in rest.splitlines() if line.strip())
    finally:
        if proc.poll() is None:
            proc.kill()  # our own child, by pid
            proc.wait()
        log.close()


def test_sigterm_with_stdin_open_stops_the_server_and_its_engine(tmp_path) -> None:
    """A supervisor's SIGTERM ends the server even while the client keeps stdin open, and no
    engine process outlives it."""
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        proc = _raw_server(log)
        try:
            _send(proc, harness.initialize_request("raw"))
            assert _receive(proc)["result"]["serverInfo"]["name"] == "m1-mcp"
            _send(proc, {"jsonrpc": "2.0", "method": "notifications/initialized"})
            deadline = time.monotonic() + 180
            while "engine: ready" not in log_path.read_text(errors="replace"):
                assert time.monotonic() < deadline, log_path.read_text(errors="replace")[-2000:]
                assert proc.poll() is None
                time.sleep(0.5)
            children = harness.descendants(proc.pid)
            assert children
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)  # stdin is still open
            assert code == 0
            assert harness.wait_gone(children, timeout=10) == []
        finally:
            if proc.poll() is None:
                proc.kill()  # our own child, by pid
                proc.wait()


def test_stdin_closed_right_after_a_call_still_gets_its_reply(tmp_path) -> None:
    """A one-shot client (`printf ... | m1-mcp serve`) writes its requests, closes stdin and
    reads stdout to the end: the call is answered (the model loads first), then the server
    exits on its own."""
    log = (tmp_path / "server.log").open("wb")
    proc = _raw_server(log)
    try:
        _send(proc, harness.initialize_request("one-shot"))
        _send(proc, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        call = {"name": "solve_problem", "arguments": {"problem": "2+3?", "max_tokens": 16}}
        _send(proc, {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call})
        _send(proc, {"jsonrpc": "2.0", "id": 3, "method": "ping"})
        proc.stdin.close()
        code = proc.wait(timeout=300)
        replies = {}
        for line in proc.stdout.read().decode().splitlines():
            message = json.loads(line)
            if "id" in message:
                replies[message["id"]] = message
        assert code == 0
        assert set(replies) == {1, 2, 3}, replies
        answer = replies[2]["result"]
        assert not answer.get("isError") and answer["structuredContent"]["answer"] is not None
        assert replies[3]["result"] == {}
    finally:
        if proc.poll() is None:
            proc.kill()  # our own child, by pid
            proc.wait()
        log.close()
