"""What every tool shares: the app state, progress reporting, usage, guided JSON generation."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from m1_mcp.files import FileAccessError, read_text_file
from m1_mcp.settings import Settings
from m1_runtime.chat.m1 import Message
from m1_runtime.engine import Engine, EngineError, Generation, GenerationRequest, Progress, Sampling

log = logging.getLogger("m1.tools")


@dataclass
class App:
    settings: Settings
    engine: Engine


# Every tool only reads (its input, and files under the configured roots) and reaches nothing
# outside this machine, so hosts need not ask before each call.
READ_ONLY = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)


class Usage(BaseModel):
    prompt_tokens: int = Field(description="Tokens in the prompt(s) sent to the model")
    completion_tokens: int = Field(description="Tokens the model generated")
    model_calls: int = Field(1, description="Generations this tool call needed")
    finish_reason: str = Field(description="'stop', or 'length' when the budget ran out")
    engine_seconds: float = Field(description="Time spent inside the engine generating")
    queue_seconds: float = Field(0.0, description="Time spent waiting for a free slot")

    @classmethod
    def of(cls, gens: list[Generation]) -> Usage:
        return cls(
            prompt_tokens=sum(g.prompt_tokens for g in gens),
            completion_tokens=sum(g.completion_tokens for g in gens),
            model_calls=len(gens),
            finish_reason="length" if any(g.finish_reason == "length" for g in gens) else "stop",
            engine_seconds=round(sum(g.engine_s for g in gens), 4),
            queue_seconds=round(sum(g.queue_s for g in gens), 4),
        )


class Reporter:
    """Turns engine progress into MCP progress notifications.

    MCP wants progress to increase with every notification, so one call's progress runs on one
    axis: loading is a tiny fraction below 1, then step `i` of `steps` generations counts
    `i + tokens/budget` (one generation: plain tokens out of the budget).
    """

    def __init__(self, ctx: Context | None, steps: int = 1) -> None:
        self.ctx = ctx
        self.steps = steps
        self.step = 0
        self.label = ""
        self.last = -1.0
        self.loading_since = time.monotonic()

    async def _send(self, value: float, total: float | None, message: str) -> None:
        if self.ctx is None or value <= self.last:
            return
        self.last = value
        try:
            await self.ctx.report_progress(value, total, message)
        except Exception:  # a client that went away must not fail the generation
            log.debug("progress notification failed", exc_info=True)

    async def __call__(self, p: Progress) -> None:
        if p.phase == "loading":
            waited = time.monotonic() - self.loading_since
            await self._send(min(waited * 1e-6, 1e-3), None, p.message)
        elif p.phase == "queued":
            await self._send(max(self.last, 0) + 1e-6, None, p.message)
        elif self.steps == 1:
            await self._send(
                float(p.tokens), float(p.max_tokens), f"{p.tokens}/{p.max_tokens} tokens: …{p.tail}"
            )
        else:
            frac = p.tokens / max(p.max_tokens, 1)
            await self._send(
                self.step + frac,
                float(self.steps),
                f"{self.label} {p.tokens}/{p.max_tokens} tokens: …{p.tail}",
            )


P = ParamSpec("P")
R = TypeVar("R")


def user_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Anticipated failures become tool errors whose text the caller can act on."""

    @wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except (EngineError, FileAccessError, InputError) as exc:
            raise ToolError(str(exc)) from exc

    return wrapper


class InputError(ValueError):
    pass


def take_text(app: App, text: str | None, path: str | None, what: str) -> str:
    """Exactly one of inline text or a root-checked path; bounded; not blank."""
    if (text is None) == (path is None):
        raise InputError(f"give either '{what}' or 'path', not both and not neither")
    if path is not None:
        s = app.settings
        text = read_text_file(path, s.file_roots, s.max_file_bytes)
    assert text is not None
    if not text.strip():
        raise InputError(f"the {what} is empty")
    if len(text) > app.settings.max_input_chars:
        raise InputError(
            f"the {what} has {len(text)} characters; the limit is {app.settings.max_input_chars}"
        )
    return text


def clamp_budget(app: App, requested: int | None) -> int:
    s = app.settings
    value = s.default_max_tokens if requested is None else requested
    return max(1, min(value, s.max_max_tokens))


def schema_budget(schema: dict[str, Any]) -> int:
    """An upper bound on the tokens a JSON document matching `schema` can take.

    Every schema we guide with caps its strings (maxLength) and arrays (maxItems); a token
    carries at least one character, and a string character at most two (an escape), so the
    bound holds with whitespace disabled. The engine gets this as max_tokens: the JSON always
    closes before the budget ends.
    """
    defs = schema.get("$defs", {})

    def size(node: dict[str, Any]) -> int:
        if "$ref" in node:
            return size(defs[node["$ref"].rsplit("/", 1)[-1]])
        if "anyOf" in node:
            return max(size(n) for n in node["anyOf"])
        if "enum" in node:
            return max(len(json.dumps(v)) for v in node["enum"])
        kind = node.get("type")
        if kind == "string":
            return 2 + 2 * int(node["maxLength"])
        if kind == "integer":
            # The grammar bounds digits only through a range; an open integer never ends.
            lo, hi = node.get("minimum"), node.get("maximum")
            if lo is None or hi is None:
                raise ValueError(f"integer without minimum and maximum: {node}")
            return max(len(str(lo)), len(str(hi)))
        if kind == "boolean":
            return 5
        if kind == "null":
            return 4
        if kind == "array":
            return 2 + int(node["maxItems"]) * (size(node["items"]) + 1)
        if kind == "object":
            props = node.get("properties", {})
            return 2 + sum(len(k) + 4 + size(v) for k, v in props.items())
        raise ValueError(f"schema node without a bounded type: {node}")

    return size(schema)


def guided_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with every property required (so the grammar always emits it)."""
    schema = model.model_json_schema()

    def fix(node: dict[str, Any]) -> None:
        if node.get("type") == "object" and "properties" in node:
            node["required"] = list(node["properties"])
            node["additionalProperties"] = False
        for value in node.values():
            if isinstance(value, dict):
                fix(value)
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, dict):
                        fix(item)

    fix(schema)
    return schema


M = TypeVar("M", bound=BaseModel)


async def generate_json(
    app: App,
    messages: list[Message],
    model: type[M],
    report: Reporter,
    schema: dict[str, Any] | None = None,
) -> tuple[M, Generation]:
    """Guided decoding into `model`: the budget is the schema's bound, so it always closes."""
    schema = schema or guided_schema(model)
    budget = schema_budget(schema)
    gen = await app.engine.generate(
        GenerationRequest(
            messages=messages,
            max_tokens=budget,
            json_schema=schema,
            sampling=Sampling(),
        ),
        on_progress=report,
    )
    try:
        # strict=False: the grammar may let raw control characters into strings, which
        # Python's JSON reader accepts only when told to; the content is still what we asked.
        return model.model_validate(json.loads(gen.text, strict=False)), gen
    except ValueError as exc:
        # Should not happen with guided decoding; if it does, say so plainly.
        log.error("guided output did not validate (%s): %r", exc, gen.raw_text[:500])
        raise EngineError(
            f"the model's structured output did not validate (finish: {gen.finish_reason})"
        ) from exc


async def wait_ready(app: App, report: Reporter) -> None:
    await app.engine.wait_ready(report, timeout_s=app.settings.startup_timeout_s)
