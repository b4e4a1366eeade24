"""Start the real `m1-mcp serve` as a subprocess and check what it leaves behind.

Shared by the e2e modules: each starts one server per transport (the engine takes ~30-60 s to
start on 2 cores) and talks to it with the SDK's real clients.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import psutil


def _console_script(name: str) -> str:
    """The installed console script: beside this Python in a venv, else where pip put it."""
    for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        if (folder / name).is_file():
            return str(folder / name)
    return name


M1_MCP = _console_script("m1-mcp")

# Small limits so every tool call stays quick on the random-weight tiny model; the context is
# just large enough for map-reduce over a document of a few chunks.
TEST_ENV = {
    "M1_MCP_MODEL": "tiny-m1",  # the hybrid; smol-m1 (the default) has its own slow tests
    "M1_MCP_MAX_MODEL_LEN": "14336",
    "M1_MCP_DOC_CHUNK_TOKENS": "2048",
    "M1_MCP_DOC_CHUNK_OVERLAP": "64",
    "M1_MCP_MAX_CONCURRENT": "3",
    "M1_MCP_MAX_QUEUE": "1",
    "M1_MCP_DEFAULT_MAX_TOKENS": "32",
    "M1_MCP_MAX_FILE_BYTES": "20000",
    "M1_MCP_LOG_LEVEL": "INFO",
}

SAMPLE_CODE = "def mean(xs):\n    return sum(xs) / len(xs)\n"


def initialize_request(client_name: str) -> dict[str, Any]:
    """A raw JSON-RPC `initialize` request, for tests that speak the protocol by hand."""
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": client_name, "version": "0"},
        },
    }


async def read_stats(client: Any) -> dict[str, Any]:
    """The server's `m1://stats` resource."""
    return json.loads((await client.read_resource("m1://stats")).contents[0].text)


async def cancel_long_chat(client: Any, start_timeout: float) -> dict[str, Any]:
    """Start a 4000-token chat, cancel it once its tokens flow, and wait until neither the
    server nor the engine has anything running; return the stats at that point."""
    started = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        if total == 4000 and progress > 0:
            started.set()

    async def long_call() -> None:
        await client.call_tool(
            "chat",
            {"messages": [{"role": "user", "content": "Go on."}], "max_tokens": 4000},
            progress_callback=on_progress,
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(long_call)
        with anyio.fail_after(start_timeout):
            await started.wait()
        tg.cancel_scope.cancel()
    with anyio.fail_after(20):
        while True:
            stats = await read_stats(client)
            if stats["in_flight"] == 0 and stats["engine_unfinished_requests"] == 0:
                return stats
            await anyio.sleep(0.2)


# What the server's environment keeps from the test's: the basics, plus what a machine may
# need to find its packages and run vLLM (the GPU kit sets PYTHONPATH and VLLM_* variables).
_PASSED = ("PATH", "HOME", "TMPDIR", "LANG", "PYTHONPATH", "HF_HUB_OFFLINE", "CUDA_VISIBLE_DEVICES")


def server_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k in _PASSED or (k.startswith("VLLM_") and k != "VLLM_LOGGING_LEVEL")
    }
    env.update(TEST_ENV)
    env.update(extra)
    return env


def tool_calls(file_root: Path) -> dict[str, dict[str, Any]]:
    """One cheap, valid call per tool."""
    return {
        "solve_problem": {"problem": "What is 17 * 3?", "max_tokens": 24},
        "practice_problems": {"topic": "fractions", "difficulty": "easy", "count": 1},
        "analyze_document": {"text": "The cat sat on the mat. It was warm.", "mode": "qa"},
        "review_code": {"path": str(file_root / "mean.py"), "language": "python"},
        "suggest_improvements": {"code": SAMPLE_CODE, "language": "python"},
        "chat": {
            "messages": [{"role": "user", "content": "What's the weather in Paris?"}],
            "tools": [
                {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                }
            ],
            "max_tokens": 16,
        },
    }


def make_file_root(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "mean.py").write_text(SAMPLE_CODE)
    (root / "blob.bin").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)))
    for a, b in (("loop_a.py", "loop_b.py"), ("loop_b.py", "loop_a.py")):
        if not (root / a).is_symlink():
            (root / a).symlink_to(root / b)
    return root


# The background-job tools: they run the others, so `call_every_tool` drives them through one
# short job rather than through `tool_calls`.
JOB_TOOLS = {"start_job", "job_result", "cancel_job"}


async def call_every_tool(client: Any, file_root: Path) -> dict[str, Any]:
    """Call each tool once (`tool_calls`, then one background job) and check every result
    against its output schema; returns the tools as listed."""
    tools = {t.name: t for t in (await client.list_tools()).tools}
    calls = tool_calls(file_root)
    assert set(tools) == set(calls) | JOB_TOOLS
    for name, args in calls.items():
        result = await client.call_tool(name, args)
        check_result_against_schema(result, tools[name].output_schema)
    job = await run_job(client, tools, "solve_problem", calls["solve_problem"])
    assert job["status"] == "completed", job
    check_structured(job["result"], tools["solve_problem"].output_schema)
    result = await client.call_tool("cancel_job", {"job_id": job["job_id"]})  # finished: kept
    check_result_against_schema(result, tools["cancel_job"].output_schema)
    assert result.structured_content["status"] == "completed"
    return tools


async def run_job(
    client: Any, tools: dict[str, Any], tool: str, args: dict[str, Any], polls: int = 30
) -> dict[str, Any]:
    """start_job, then job_result until the job is no longer working; its last status."""
    started = await client.call_tool("start_job", {"tool": tool, "arguments": args})
    check_result_against_schema(started, tools["start_job"].output_schema)
    status = started.structured_content
    for _ in range(polls):
        if status["status"] != "working":
            break
        polled = await client.call_tool("job_result", {"job_id": status["job_id"], "wait_s": 20})
        check_result_against_schema(polled, tools["job_result"].output_schema)
        status = polled.structured_content
    return status


def check_structured(data: Any, output_schema: dict[str, Any] | None) -> None:
    assert output_schema is not None and data is not None
    jsonschema.validate(data, output_schema)


def check_result_against_schema(result: Any, output_schema: dict[str, Any] | None) -> None:
    assert not result.is_error, result.content[0].text if result.content else result
    assert output_schema is not None
    assert result.structured_content is not None
    jsonschema.validate(result.structured_content, output_schema)


BAD_CALLS: list[tuple[str, dict[str, Any], str]] = [
    ("review_code", {"code": ""}, "the code is empty"),
    ("review_code", {"code": "x" * 400_001}, "at most 400000 characters"),
    ("analyze_document", {"text": "hello", "mode": "poem"}, "'summary', 'qa' or 'insights'"),
    ("analyze_document", {"text": "   \n  "}, "the text is empty"),
    ("review_code", {"path": "/etc/passwd"}, "outside the allowed file roots"),
    ("review_code", {"path": "blob.bin"}, "binary"),
    ("review_code", {"code": "x = 1", "path": "mean.py"}, "not both"),
    ("practice_problems", {"topic": "x", "count": 0}, "greater than or equal to 1"),
    (
        "chat",
        {"messages": [{"role": "user", "content": "hi"}], "tools": [{"name": "bad name!"}]},
        "should match pattern",
    ),
    (
        "chat",
        {
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"name": "f", "parameters": {"type": "string"}}],
        },
        '"type": "object"',
    ),
    ("chat", {"messages": [{"role": "system", "content": "hi"}]}, "at least one 'user'"),
    (
        "chat",
        {"messages": [{"role": "user", "content": "hi"}], "seed": 2**64},
        "less than or equal to 9223372036854775807",
    ),
    ("practice_problems", {"topic": "  \n "}, "at least 1 character"),
    ("review_code", {"path": "loop_a.py"}, "symbolic links form a loop"),
    ("solve_problem", {"problem": " \n\t "}, "the problem is empty"),
]


def descendants(pid: int) -> list[int]:
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def wait_gone(pids: list[int], timeout: float = 30.0) -> list[int]:
    """Pids still alive (zombies count as gone) after waiting up to `timeout`."""
    deadline = time.monotonic() + timeout
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _alive(p)]
        time.sleep(0.2)
    return alive


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@contextlib.contextmanager
def running_http_server(transport: str, tmp: Path, args: list[str], env: dict[str, str]):
    """An `HttpServer` for a test module (log in tmp/server.log), stopped after it if still up."""
    srv = HttpServer(transport, tmp / "server.log", args, env)
    try:
        yield srv
    finally:
        if srv.proc.poll() is None:
            srv.stop()


class HttpServer:
    """`m1-mcp serve --transport sse|streamable-http --port 0`, its stderr in a log file."""

    def __init__(self, transport: str, log_path: Path, args: list[str], env: dict[str, str]):
        self.transport = transport
        self.log_path = log_path
        self.log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [M1_MCP, "serve", "--transport", transport, "--port", "0", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            env=env,
        )
        self.url = self._wait_for_url()

    def _wait_for_url(self, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(r"m1-mcp: listening on (\S+)", self.log_text())
            if match:
                return match.group(1)
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_text()[-3000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"server did not start listening:\n{self.log_text()[-3000:]}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> tuple[int, list[int]]:
        """Signal the server; return its exit code and any of its processes still alive."""
        children = descendants(self.proc.pid)
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # our own child, by pid: the test then fails on the exit code
            code = self.proc.wait()
        self.log.close()
        return code, wait_gone(children, timeout=10.0)
