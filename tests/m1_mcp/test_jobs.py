"""The job store on its own, with the real MCP server factory and the fake engine: accepted
input, refused input, waiting, cancelling, the bound on jobs and expiry."""

from __future__ import annotations

import time

import anyio
import pytest

from m1_mcp.jobs import JobError
from m1_mcp.server import build_server
from m1_mcp.settings import Settings
from m1_mcp.tools.common import App
from tests.m1_mcp.fake_engine import FakeEngine

pytestmark = pytest.mark.anyio


def _app(stall_s: float = 0.0, **settings) -> App:
    engine = FakeEngine(reply="4. The answer is 4.", stall_s=stall_s)
    return App(settings=Settings(**settings), engine=engine)  # type: ignore[arg-type]


async def test_a_job_runs_a_tool_and_keeps_its_result() -> None:
    app = _app()
    server = build_server(app)
    async with app.jobs.running():
        status = await app.jobs.start(server, "solve_problem", {"problem": "What is 2+2?"})
        assert status.status in ("working", "completed")
        done = await app.jobs.wait(status.job_id, 10)
    assert done.status == "completed" and done.result is not None
    assert "answer" in done.result and "usage" in done.result


async def test_bad_input_fails_start_and_keeps_no_job() -> None:
    app = _app()
    server = build_server(app)
    async with app.jobs.running():
        with pytest.raises(JobError, match="the problem is empty"):
            await app.jobs.start(server, "solve_problem", {"problem": "   "})
        with pytest.raises(JobError, match="validation error"):
            await app.jobs.start(server, "solve_problem", {"problem": 5, "max_tokens": "x"})
    assert app.jobs._jobs == {}


async def test_cancel_stops_a_working_job() -> None:
    app = _app(stall_s=30.0)
    server = build_server(app)
    async with app.jobs.running():
        status = await app.jobs.start(
            server, "chat", {"messages": [{"role": "user", "content": "hi"}]}
        )
        assert status.status == "working"
        with anyio.fail_after(5):
            cancelled = await app.jobs.cancel(status.job_id)
    assert cancelled.status == "cancelled"


async def test_jobs_are_bounded_and_expire() -> None:
    app = _app(max_jobs=1, job_ttl_s=60)
    server = build_server(app)
    async with app.jobs.running():
        first = await app.jobs.start(server, "solve_problem", {"problem": "1+1?"})
        await app.jobs.wait(first.job_id, 10)
        with pytest.raises(JobError, match="at most 1 jobs"):
            await app.jobs.start(server, "solve_problem", {"problem": "2+2?"})
        job = app.jobs.get(first.job_id)
        job.finished_at = time.monotonic() - 61  # as if it ended over a TTL ago
        with pytest.raises(JobError, match="no job"):
            app.jobs.get(first.job_id)
        await app.jobs.start(server, "solve_problem", {"problem": "2+2?"})  # room again


async def test_jobs_need_a_running_store() -> None:
    app = _app()
    with pytest.raises(JobError, match="only while the server is serving"):
        await app.jobs.start(build_server(app), "solve_problem", {"problem": "1+1?"})
