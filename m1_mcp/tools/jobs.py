"""Background jobs as tools: start_job, job_result, cancel_job, and the m1://jobs/{id}
resource (the job store itself is m1_mcp/jobs.py)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from m1_mcp.jobs import MAX_WAIT_S, JobError, JobStatus
from m1_mcp.tools.common import App

# The tools a job may run: every tool that asks the model.
JobTool = Literal[
    "solve_problem",
    "practice_problems",
    "analyze_document",
    "review_code",
    "suggest_improvements",
    "chat",
]
JobId = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$", description="The id start_job returned")]
JOBS_URI = "m1://jobs/{job_id}"
# Starting and cancelling change the server's state; reading a job's status does not.
STARTS_WORK = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
)
READS_STATUS = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)


async def _answer(pending: Awaitable[JobStatus]) -> JobStatus:
    """A job store's answer, its refusals as tool errors the caller can act on."""
    try:
        return await pending
    except JobError as exc:
        raise ToolError(str(exc)) from exc


def register(server: MCPServer, app: App) -> None:
    @server.tool(
        name="start_job",
        title="Start a background job",
        annotations=STARTS_WORK,
        description="Run a generating tool (solve_problem, practice_problems, analyze_document, "
        "review_code, suggest_improvements or chat) in the background and return its job id at "
        "once, for work longer than a client waits for one call (a long document, long "
        "thinking). The arguments are the tool's own and are checked before this returns. "
        "Then call job_result with the id.",
    )
    async def start_job(
        tool: JobTool,
        arguments: Annotated[
            dict[str, Any], Field(description="The arguments of that tool, as for a direct call")
        ],
    ) -> JobStatus:
        return await _answer(app.jobs.start(server, tool, arguments))

    @server.tool(
        name="job_result",
        title="Read a background job",
        annotations=READS_STATUS,
        description="Wait up to wait_s seconds for a background job to finish; returns its "
        "result when completed, else its progress so far (call again until status is not "
        f"'working'). wait_s is at most {MAX_WAIT_S:.0f}.",
    )
    async def job_result(
        job_id: JobId,
        wait_s: Annotated[float, Field(ge=0, le=MAX_WAIT_S, allow_inf_nan=False)] = 20.0,
    ) -> JobStatus:
        return await _answer(app.jobs.wait(job_id, wait_s))

    @server.tool(
        name="cancel_job",
        title="Cancel a background job",
        annotations=STARTS_WORK,
        description="Cancel a running background job (its generation is aborted); returns its "
        "final status. A finished job is left as it is.",
    )
    async def cancel_job(job_id: JobId) -> JobStatus:
        return await _answer(app.jobs.cancel(job_id))

    @server.resource(
        JOBS_URI,
        name="job",
        description="A background job's status, progress and (once completed) result, as JSON",
        mime_type="application/json",
    )
    def job(job_id: str) -> str:
        try:
            return app.jobs.get(job_id).status().model_dump_json(indent=2)
        except JobError as exc:
            raise ResourceError(str(exc)) from exc
