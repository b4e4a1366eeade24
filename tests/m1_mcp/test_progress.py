"""Progress keeps coming while the engine says nothing (issue 12: at least every 10 s in every
phase). A short heartbeat interval keeps the test quick."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from mcp import Client

from m1_mcp.server import build_server
from m1_mcp.settings import load_settings
from m1_mcp.tools.common import App
from m1_mcp.tools.progress import Reporter
from m1_runtime.engine import Progress
from tests.m1_mcp.fake_engine import FakeEngine

pytestmark = pytest.mark.anyio

BEAT_S = 0.05
STALL_S = 1.0  # the engine's silence: a long prefill, or a long wait in the queue


@pytest.mark.parametrize("queued", [False, True])
async def test_silent_engine_still_gets_progress_every_interval(
    tmp_path: Path, queued: bool
) -> None:
    engine = FakeEngine("So the answer is 4.", stall_s=STALL_S, queued=queued)
    settings = load_settings(flags={}, environ={})
    app = App(settings=settings, engine=engine, heartbeat_s=BEAT_S)  # type: ignore[arg-type]
    seen: list[tuple[float, float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((time.monotonic(), progress, total, message))

    async with Client(build_server(app)) as client:
        started = time.monotonic()
        result = await client.call_tool(
            "solve_problem", {"problem": "2+2?"}, progress_callback=on_progress
        )
        ended = time.monotonic()
    assert not result.is_error
    times = [started] + [t for t, *_ in seen] + [ended]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # Without the heartbeat the engine's silence would leave one gap of STALL_S.
    assert max(gaps) < STALL_S / 2, gaps
    values = [v for _, v, _, _ in seen]
    assert values == sorted(values) and len(set(values)) == len(values)  # strictly rising
    silent = "waiting for a free slot" if queued else "reading the prompt"
    assert sum(m == silent for *_, m in seen) >= 5
    last = seen[-1]
    assert last[1] == result.structured_content["usage"]["completion_tokens"]  # ends on tokens


async def test_heartbeat_keeps_the_axis_and_stays_below_the_next_token() -> None:
    sent: list[tuple[float, float | None, str]] = []

    class Ctx:
        async def report_progress(self, value: float, total: float | None, message: str) -> None:
            sent.append((value, total, message))

    report = Reporter(Ctx())  # type: ignore[arg-type]
    await report(Progress("generating", 10, 100, tail="abc"))
    await report.beat()
    await report.beat()
    await report(Progress("generating", 11, 100, tail="abcd"))
    assert [v for v, _, _ in sent] == sorted(v for v, _, _ in sent)
    assert 10 < sent[1][0] < sent[2][0] < 11 and sent[2][1] == 100
    assert sent[1][2] == sent[0][2]  # the latest message, again


async def test_no_context_means_no_heartbeat_task() -> None:
    report = Reporter(None)
    async with report.heartbeat(0.001):
        await report.beat()
    assert report.last == -1.0
