"""`InFlight`: which requests read from stdin still await a reply (the end-to-end case, a
client that closes stdin right after a call, is in tests/e2e/test_stdio.py)."""

from __future__ import annotations

import anyio
import pytest
from mcp.shared.message import SessionMessage
from mcp.types import JSONRPCError, JSONRPCNotification, JSONRPCResponse

from m1_mcp.stdio_drain import InFlight

pytestmark = pytest.mark.anyio


def line(**message) -> dict:
    """A stdin message as the guard parsed it."""
    return {"jsonrpc": "2.0", **message}


def reply(request_id) -> SessionMessage:
    return SessionMessage(JSONRPCResponse(jsonrpc="2.0", id=request_id, result={}))


def test_requests_count_until_answered_or_cancelled() -> None:
    flight = InFlight()
    flight.read(line(id=1, method="tools/call"))
    flight.read(line(id="1", method="ping"))  # another id than 1
    flight.read(line(id=2, method="tools/call"))
    flight.read(line(method="notifications/initialized"))  # no id: no reply expected
    flight.read(line(id=9, result={}))  # a reply from the client: not a request
    assert len(flight) == 3
    flight.answered(reply(1))
    assert len(flight) == 2
    error = JSONRPCError(jsonrpc="2.0", id="1", error={"code": -32601, "message": "no"})
    flight.answered(SessionMessage(error))
    flight.answered(SessionMessage(JSONRPCNotification(jsonrpc="2.0", method="x")))
    assert len(flight) == 1
    flight.read(line(method="notifications/cancelled", params={"requestId": 2}))
    assert len(flight) == 0


async def test_drain_waits_for_the_last_reply_and_is_bounded() -> None:
    flight = InFlight()
    assert await flight.drain(limit_s=0.01)  # nothing in flight: at once
    flight.read(line(id=1, method="tools/call"))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:

            async def answer_later() -> None:
                await anyio.sleep(0.05)
                flight.answered(reply(1))

            tg.start_soon(answer_later)
            assert await flight.drain(limit_s=5)
    flight.read(line(id=2, method="tools/call"))
    with anyio.fail_after(5):
        assert not await flight.drain(limit_s=0.05)  # never answered: gives up


async def test_relay_passes_everything_on_and_closes_the_writer() -> None:
    flight = InFlight()
    flight.read(line(id=1, method="tools/call"))
    sdk_send, relay_receive = anyio.create_memory_object_stream[SessionMessage](0)
    stdout_send, stdout_receive = anyio.create_memory_object_stream[SessionMessage](8)
    async with anyio.create_task_group() as tg:
        tg.start_soon(flight.relay, relay_receive, stdout_send)
        async with sdk_send:
            await sdk_send.send(reply(1))
    written = [m async for m in stdout_receive]  # ends: the relay closed the writer
    assert [m.message.id for m in written] == [1] and len(flight) == 0
