"""Build the MCP server and run it over stdio, SSE or Streamable HTTP.

The engine belongs to `serve()`, not to the MCP lifespan: the SDK enters the lifespan once per
SSE connection, and the engine must outlive connections. The lifespan only makes sure loading
has begun (on stdio that happens inside the transport, after stdout has been diverted away from
the wire, so engine processes inherit a stdout that cannot corrupt the stream).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from mcp.server import MCPServer
from mcp.server.streamable_http import EventStore
from mcp.server.transport_security import TransportSecuritySettings

from m1_mcp import prompts, protocol, resources
from m1_mcp.auth import BearerTokenMiddleware
from m1_mcp.host_check import HostCheckMiddleware, HostRules
from m1_mcp.jsonrpc_guard import HttpGuard, guarded_stdio_server
from m1_mcp.settings import Settings
from m1_mcp.tools import chat, code_review, documents, jobs, reasoning
from m1_mcp.tools.common import App
from m1_runtime.engine import Engine, EngineConfig

log = logging.getLogger("m1.server")

INSTRUCTIONS = (
    "Tools backed by a MiniMax-M1 model served by an embedded vLLM engine: solve_problem and "
    "practice_problems (math), analyze_document (summary | qa | insights, long documents "
    "map-reduced), review_code and suggest_improvements (code), chat (function calling). "
    "Resources m1://model and m1://stats describe the model and the live load. For work longer "
    "than a client waits, start_job runs any of them in the background; job_result collects it."
)


# How long a client waits before reconnecting to a stream the server closed (with an event store).
RETRY_MS = 100


def engine_config(s: Settings) -> EngineConfig:
    """The engine's part of the settings: every EngineConfig field, by name (a test checks that
    Settings has them all, with the same defaults)."""
    return EngineConfig(**{f.name: getattr(s, f.name) for f in dataclasses.fields(EngineConfig)})


def build_server(app: App, on_session: Callable[[], None] = lambda: None) -> MCPServer:
    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[App]:
        on_session()
        yield app

    server = MCPServer(
        "m1-mcp",
        instructions=INSTRUCTIONS,
        version="0.1.0",
        lifespan=lifespan,
        log_level=app.settings.log_level,
        cache_hints=protocol.CACHE_HINTS,
    )
    for module in (reasoning, documents, code_review, chat, jobs):
        module.register(server, app)
    prompts.register(server)
    resources.register(server, app)
    protocol.install(server)
    return server


def transport_security(rules: HostRules) -> TransportSecuritySettings:
    # DNS-rebinding protection stays on whatever the bind address; extra hosts are opt-in.
    # host_check.py parses Host and Origin strictly first; the SDK's looser check runs after.
    hosts = rules.sdk_patterns()
    origins = [f"http://{h}" for h in hosts] + [f"https://{h}" for h in hosts]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )


def http_app(server: MCPServer, s: Settings, event_store: EventStore | None = None) -> Any:
    """The ASGI app for SSE or Streamable HTTP. `event_store` (Streamable HTTP only) lets a
    client resume a dropped stream; the server keeps none (memory grows with every event), the
    conformance fixture server passes one to run the suite's SSE-polling scenario."""
    rules = HostRules(s.allowed_hosts)
    security = transport_security(rules)
    asgi: Any
    if s.transport == "sse":
        asgi = server.sse_app(transport_security=security, host=s.host)
    else:
        asgi = server.streamable_http_app(
            transport_security=security,
            host=s.host,
            event_store=event_store,
            retry_interval=RETRY_MS if event_store is not None else None,
        )
    # Inside the host and token checks: a caller refused there learns nothing about JSON-RPC.
    asgi = HttpGuard(asgi)
    if s.auth_token:
        return HostCheckMiddleware(BearerTokenMiddleware(asgi, s.auth_token), rules)
    return HostCheckMiddleware(asgi, rules)


def endpoint(s: Settings, port: int | None = None) -> str:
    path = "/sse" if s.transport == "sse" else "/mcp"
    return f"http://{s.host}:{port or s.port}{path}"


async def serve(settings: Settings) -> None:
    """Run until the transport ends (stdin EOF), SIGINT or SIGTERM; then stop the engine."""
    engine = Engine(engine_config(settings))
    app = App(settings=settings, engine=engine)
    async with app.jobs.running(), anyio.create_task_group() as tg:
        started = False

        def start_engine() -> None:
            nonlocal started
            if not started:
                started = True
                tg.start_soon(engine.start)

        server = build_server(app, on_session=start_engine)
        stop = anyio.Event()
        tg.start_soon(_watch_signals, stop)
        try:
            async with anyio.create_task_group() as inner:

                async def stopper() -> None:
                    await stop.wait()
                    if settings.transport == "stdio":
                        await _end_stdio_process(engine)
                    inner.cancel_scope.cancel()

                if settings.transport == "stdio":
                    inner.start_soon(stopper)
                    log.info("m1-mcp: serving MCP over stdio")
                    await run_stdio(server)
                else:
                    start_engine()  # no stdout to protect: load at once
                    await run_http(server, settings, stop)
                inner.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                log.info("m1-mcp: shutting down")
                await engine.stop()
            tg.cancel_scope.cancel()


async def run_stdio(server: MCPServer) -> None:
    """`MCPServer.run_stdio_async` with stdin read through the JSON-RPC guard
    (`m1_mcp/jsonrpc_guard.py`). MCPServer has no public way to run over given streams; its
    low-level server's `run` is what `run_stdio_async` itself calls."""
    lowlevel = server._lowlevel_server
    async with guarded_stdio_server() as (read_stream, write_stream):
        await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())


async def _end_stdio_process(engine: Engine) -> None:
    """SIGINT/SIGTERM on stdio: stop the engine, then end the process.

    The stdio transport reads stdin in a worker thread that cancellation cannot interrupt, so
    while the client keeps stdin open the transport would never return and the signal would be
    ignored (and a supervisor's SIGKILL would then orphan the engine processes). The engine is
    stopped first, with its processes; then the process exits at once.
    """
    with anyio.CancelScope(shield=True):
        log.info("m1-mcp: shutting down (signal on stdio)")
        await engine.stop()
        # Calls that were generating now fail ("the engine is stopping"): give their error
        # replies a moment to reach stdout before the process goes.
        await anyio.sleep(0.5)
    log.info("m1-mcp: stopped")
    logging.shutdown()
    sys.stderr.flush()
    os._exit(0)


async def _watch_signals(stop: anyio.Event) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("m1-mcp: received %s", signal.Signals(signum).name)
            stop.set()


async def run_http(
    server: MCPServer, s: Settings, stop: anyio.Event, event_store: EventStore | None = None
) -> None:
    import uvicorn

    class _Server(uvicorn.Server):
        # Signals are ours (see _watch_signals): uvicorn must not re-raise them after its
        # shutdown, which would kill the process before the engine stops.
        def capture_signals(self):
            from contextlib import nullcontext

            return nullcontext()

    config = uvicorn.Config(
        http_app(server, s, event_store),
        host=s.host,
        port=s.port,
        log_level=s.log_level.lower(),
        lifespan="on",
        access_log=False,
    )
    uv = _Server(config)

    async def announce() -> None:
        while not uv.started:
            await anyio.sleep(0.05)
        port = s.port
        for srv in getattr(uv, "servers", []):
            for sock in srv.sockets:
                port = sock.getsockname()[1]
        # The exact line tests and users look for; on stderr like every other message.
        sys.stderr.write(f"m1-mcp: listening on {endpoint(s, port)} ({s.transport})\n")
        sys.stderr.flush()

    async def exit_on_stop() -> None:
        await stop.wait()
        uv.should_exit = True

    async with anyio.create_task_group() as tg:
        tg.start_soon(announce)
        tg.start_soon(exit_on_stop)
        await uv.serve()
        tg.cancel_scope.cancel()
