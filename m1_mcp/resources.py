"""MCP resources: the model card and live engine statistics, as JSON."""

from __future__ import annotations

import json

from mcp.server.mcpserver import MCPServer

from m1_mcp.tools.common import App

MODEL_URI = "m1://model"
STATS_URI = "m1://stats"


def register(server: MCPServer, app: App) -> None:
    @server.resource(
        MODEL_URI,
        name="model_card",
        description="The served model: architecture, layers, context length, dtype, device, "
        "vLLM version, and whether it is loaded yet",
        mime_type="application/json",
    )
    def model_card() -> str:
        return json.dumps(app.engine.info(), indent=2)

    @server.resource(
        STATS_URI,
        name="stats",
        description="Live engine statistics: requests, in flight, queued, tokens in and out, "
        "tokens/s over the last 10 s",
        mime_type="application/json",
    )
    def stats() -> str:
        return json.dumps(app.engine.stats(), indent=2)
