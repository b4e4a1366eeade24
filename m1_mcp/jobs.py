"""Background jobs: a tool call that outlives the request that started it.

Desktop clients give up on a tool call after about a minute, and a real M1 answer with thinking,
or a long document, takes longer. `start_job` runs any generating tool as a job and answers at
once with its id; `job_result` waits a bounded time for it and returns the result or the
progress so far; `cancel_job` aborts it (and so its engine requests); `m1://jobs/{id}` shows
it. The job record follows the MCP Tasks extension's shape (an id, a status of `working`,
`completed`, `failed` or `cancelled`, a status message, creation and update times, a TTL and a
suggested poll interval); the SDK does not serve the extension's own methods yet, so tools
carry it.

A job runs the tool through the server's own `call_tool`, so it validates, checks and reports
errors exactly like a direct call; `start_job` returns only once the tool has accepted its
input (the runner's first progress), so bad input fails the `start_job` call itself.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import anyio
from anyio.abc import TaskGroup
from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel, Field, PrivateAttr

log = logging.getLogger("m1.jobs")

JobState = Literal["working", "completed", "failed", "cancelled"]
# The most a job_result call waits: below the ~60 s after which desktop clients give up.
MAX_WAIT_S = 50.0
POLL_INTERVAL_S = 5.0
# How long start_job waits for the tool to accept its input (a file read at most).
ACCEPT_TIMEOUT_S = 30.0


class JobError(ValueError):
    """A job request that cannot be served; the message says what to change."""


class JobStatus(BaseModel):
    job_id: str = Field(description="The job's id, for job_result, cancel_job and m1://jobs/{id}")
    tool: str = Field(description="The tool the job runs")
    status: JobState = Field(description="working, completed, failed or cancelled")
    status_message: str = Field(description="The latest progress message, or why it ended")
    progress: float | None = Field(None, description="The latest progress value")
    total: float | None = Field(None, description="What progress counts up to, when known")
    created_at: str = Field(description="When the job started (ISO 8601, UTC)")
    last_updated_at: str = Field(description="When its status or progress last changed")
    ttl_s: int = Field(description="How long a finished job's result is kept, in seconds")
    poll_interval_s: float = Field(description="A sensible wait between job_result calls")
    result: dict[str, Any] | None = Field(
        None, description="The tool's structured result, once completed"
    )
    error: str | None = Field(None, description="The tool's error, once failed")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


@dataclass
class Job:
    job_id: str
    tool: str
    arguments: dict[str, Any]
    ttl_s: int
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    finished_at: float | None = None  # monotonic
    state: JobState = "working"
    message: str = "starting"
    progress: float | None = None
    total: float | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    accepted: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)

    def status(self) -> JobStatus:
        return JobStatus(
            job_id=self.job_id,
            tool=self.tool,
            status=self.state,
            status_message=self.message,
            progress=self.progress,
            total=self.total,
            created_at=_iso(self.created),
            last_updated_at=_iso(self.updated),
            ttl_s=self.ttl_s,
            poll_interval_s=POLL_INTERVAL_S,
            result=self.result,
            error=self.error,
        )

    def finish(self, state: JobState, message: str) -> None:
        self.state, self.message = state, message
        self.updated = time.time()
        self.finished_at = time.monotonic()
        self.accepted.set()
        self.done.set()


class JobContext(Context):
    """The context a job's tool runs with: its progress goes into the job record (there is no
    request to notify), and its first progress means the tool accepted its input."""

    _job: Job | None = PrivateAttr(default=None)

    def for_job(self, job: Job) -> JobContext:
        self._job = job
        return self

    async def report_progress(
        self, progress: float, total: float | None = None, message: str | None = None
    ) -> None:
        job = self._job
        if job is None:
            return
        job.progress, job.total = progress, total
        if message:
            job.message = message
        job.updated = time.time()
        job.accepted.set()


class JobStore:
    """The server's jobs: at most `max_jobs` kept (running or finished), finished ones dropped
    `ttl_s` after they end. Jobs run in the task group of `running()`, which `serve()` holds
    for the server's lifetime, so a job outlives the call that started it."""

    def __init__(self, max_jobs: int, ttl_s: int) -> None:
        self.max_jobs = max_jobs
        self.ttl_s = ttl_s
        self._jobs: dict[str, Job] = {}
        self._tg: TaskGroup | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                yield
            finally:
                self._tg = None
                tg.cancel_scope.cancel()  # jobs end with the server

    def _sweep(self) -> None:
        now = time.monotonic()
        for job_id, job in list(self._jobs.items()):
            if job.finished_at is not None and now - job.finished_at > self.ttl_s:
                del self._jobs[job_id]

    def get(self, job_id: str) -> Job:
        self._sweep()
        job = self._jobs.get(job_id)
        if job is None:
            raise JobError(
                f"no job '{job_id}': it never existed, or it finished more than "
                f"{self.ttl_s} s ago and its result was dropped"
            )
        return job

    async def start(self, server: MCPServer, tool: str, arguments: dict[str, Any]) -> JobStatus:
        if self._tg is None:
            raise JobError("background jobs run only while the server is serving")
        self._sweep()
        if len(self._jobs) >= self.max_jobs:
            running = sum(j.state == "working" for j in self._jobs.values())
            raise JobError(
                f"the server keeps at most {self.max_jobs} jobs ({running} running); "
                "collect or cancel some, or wait for finished ones to expire"
            )
        job = Job(job_id=uuid.uuid4().hex[:16], tool=tool, arguments=arguments, ttl_s=self.ttl_s)
        self._jobs[job.job_id] = job
        self._tg.start_soon(self._run, server, job)
        with anyio.move_on_after(ACCEPT_TIMEOUT_S):
            await job.accepted.wait()
        if job.state == "failed":  # refused its input: the caller learns why, now
            del self._jobs[job.job_id]
            raise JobError(job.error or "the tool refused its input")
        return job.status()

    async def _run(self, server: MCPServer, job: Job) -> None:
        context = JobContext(mcp_server=server).for_job(job)
        with job.scope:
            try:
                result = await server.call_tool(job.tool, job.arguments, context)
            except Exception as exc:  # the tool's own error: the job's outcome, not a crash
                job.error = str(exc)
                job.finish("failed", f"failed: {exc}")
                return
            text = " ".join(getattr(c, "text", "") for c in getattr(result, "content", []))
            if getattr(result, "is_error", False):
                job.error = text
                job.finish("failed", f"failed: {text}")
                return
            job.result = getattr(result, "structured_content", None) or {"text": text}
            job.finish("completed", "completed")
            return
        job.finish("cancelled", "cancelled")

    async def wait(self, job_id: str, wait_s: float) -> JobStatus:
        job = self.get(job_id)
        with anyio.move_on_after(min(max(wait_s, 0.0), MAX_WAIT_S)):
            await job.done.wait()
        return job.status()

    async def cancel(self, job_id: str) -> JobStatus:
        job = self.get(job_id)
        if job.state == "working":
            job.scope.cancel()
            with anyio.move_on_after(10):
                await job.done.wait()
        return job.status()
