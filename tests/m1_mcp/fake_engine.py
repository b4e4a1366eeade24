"""A fake engine with the surface the tools use, so tool logic is tested in milliseconds.

It renders prompts with M1's real chat format and parses replies with the real output parser;
its tokenizer is a toy (four characters a token) that still round-trips `encode`/`decode`. It
keeps the engine's rules that tools rely on: a prompt over the context is refused, and a guided
(JSON) request whose prompt and budget overflow the context is refused too. Replies come from a
function of the request, so a test states what "the model" says.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio

from m1_runtime.chat import formats, m1
from m1_runtime.engine import (
    EngineNotReady,
    Fit,
    Generation,
    GenerationRequest,
    Progress,
    ProgressCallback,
    PromptTooLong,
)
from m1_runtime.engine.outputs import to_generation

CHARS_PER_TOKEN = 4

Reply = Callable[[GenerationRequest], str]


class FakeEngine:
    def __init__(
        self,
        reply: Reply | str = "",
        max_model_len: int = 32768,
        loaded: bool = True,
        stall_s: float = 0.0,
        queued: bool = False,
    ) -> None:
        self.reply = reply if callable(reply) else (lambda _request: str(reply))
        self.max_model_len = max_model_len
        self.state = "ready" if loaded else "loading"
        self.stall_s = stall_s  # silent time before the first token (a long prefill)
        self.queued = queued  # say "waiting for a free slot" first
        self.requests: list[GenerationRequest] = []
        self.prompts: list[str] = []
        self.waits = 0
        self._format = formats.ChatFormat()
        self._vocab: dict[str, int] = {}
        self._pieces: list[str] = []

    # ---------------------------------------------------------------- lifecycle

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    async def wait_ready(
        self, on_progress: ProgressCallback | None = None, timeout_s: float = 600.0
    ) -> None:
        self.waits += 1
        while self.state != "ready":  # a test that never loads the model waits forever
            if on_progress is not None:
                await on_progress(Progress(phase="loading", message="loading the model"))
            await anyio.sleep(0.01)

    def info(self) -> dict[str, Any]:
        return {"state": self.state, "model": "fake"}

    def stats(self) -> dict[str, Any]:
        return {"state": self.state, "requests": len(self.requests)}

    # ---------------------------------------------------------------- tokens

    def encode(self, text: str) -> list[int]:
        ids = []
        for i in range(0, len(text), CHARS_PER_TOKEN):
            piece = text[i : i + CHARS_PER_TOKEN]
            if piece not in self._vocab:
                self._vocab[piece] = len(self._pieces)
                self._pieces.append(piece)
            ids.append(self._vocab[piece])
        return ids

    def decode(self, ids: list[int]) -> str:
        return "".join(self._pieces[i] for i in ids)

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def render(self, request: GenerationRequest) -> str:
        thinking = False if request.json_schema is not None else request.thinking
        return m1.joined(self._format.render_segments(request.messages, request.tools, thinking))

    async def fit(self, request: GenerationRequest) -> Fit:
        return Fit(self.count_tokens(self.render(request)), request.max_tokens, self.max_model_len)

    # ---------------------------------------------------------------- generation

    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback | None = None
    ) -> Generation:
        if self.state != "ready":
            raise EngineNotReady(f"the engine is {self.state}; wait for it to be ready")
        started = time.monotonic()
        prompt = self.render(request)
        self.requests.append(request)
        self.prompts.append(prompt)
        fit = await self.fit(request)
        if fit.prompt_tokens >= self.max_model_len:
            raise PromptTooLong(f"the input is {fit.prompt_tokens} tokens; shorten it")
        if request.json_schema is not None and fit.spare < 0:
            raise PromptTooLong(f"the input is {fit.prompt_tokens} tokens; no room for the answer")
        room = self.max_model_len - fit.prompt_tokens
        budget = min(request.max_tokens, room)
        if self.queued and on_progress is not None:
            await on_progress(Progress(phase="queued", message="waiting for a free slot"))
        await anyio.sleep(self.stall_s)
        text = self.reply(request)
        tokens = self.encode(text)
        finish = "length" if len(tokens) > budget else "stop"
        text = self.decode(tokens[:budget])
        n = min(len(tokens), budget)
        if on_progress is not None:
            for done in sorted({max(n // 2, 1), n}):
                await on_progress(Progress("generating", done, budget, tail=text[-20:]))
        return to_generation(
            self._format,
            request,
            text,
            prompt_tokens=fit.prompt_tokens,
            completion_tokens=n,
            finish_reason=finish,
            queue_s=0.0,
            engine_s=time.monotonic() - started,
            total_s=time.monotonic() - started,
        )
