"""Admission control and the engine's counters: at most `max_concurrent` generations run, at
most `max_queue` wait for a slot, and anything beyond is refused at once with a clear error
(a queue that grows without bound only turns overload into timeouts).

`max_concurrent` may be left to the engine (`None`): the limit is then fixed once the engine has
started, by `batch_limit`, from what vLLM batches in one step and what its KV cache holds."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio

from m1_runtime.engine.api import EngineBusy

# Tokens per second are averaged over this window.
RATE_WINDOW_S = 10.0


@dataclass
class Counters:
    requests: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    rejected_busy: int = 0
    running: int = 0
    queued: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


def batch_limit(configured: int | None, max_num_seqs: int, kv_max_concurrency: float | None) -> int:
    """How many generations run at once: the configured number when there is one, else what the
    engine can really run together: vLLM's `max_num_seqs` (the most sequences one scheduler step
    batches), bounded by how many requests of the full context length its KV cache holds (more
    would only wait inside vLLM, invisible to our queue and its limit)."""
    if configured is not None:
        return configured
    limit = max_num_seqs
    if kv_max_concurrency is not None and kv_max_concurrency > 0:
        limit = min(limit, int(kv_max_concurrency))
    return max(1, limit)


class Admission:
    def __init__(self, max_concurrent: int | None, max_queue: int) -> None:
        self.max_concurrent = max_concurrent  # None until the engine has said (set_limit)
        self.max_queue = max_queue
        self.counters = Counters()
        self._slots = anyio.Semaphore(max_concurrent or 1)
        self._recent: deque[tuple[float, int]] = deque()  # (time, tokens)

    def set_limit(self, max_concurrent: int) -> None:
        """Fix the number of slots; only before the first generation, while none is held."""
        c = self.counters
        if c.running or c.queued:
            raise RuntimeError("the admission limit can only change while no generation runs")
        self.max_concurrent = max_concurrent
        self._slots = anyio.Semaphore(max_concurrent)

    @asynccontextmanager
    async def slot(
        self, on_queued: Callable[[], Awaitable[None]] | None = None
    ) -> AsyncIterator[float]:
        """Hold one generation slot for the body; yields the seconds spent queued. Counts the
        body's outcome: completed, cancelled or failed."""
        c = self.counters
        started = time.monotonic()
        try:
            # Take a free slot without yielding, so the running/queued counts never race.
            self._slots.acquire_nowait()
        except anyio.WouldBlock:
            if c.queued >= self.max_queue:
                c.rejected_busy += 1
                raise EngineBusy(
                    f"server busy: {c.running} generations running and {c.queued} waiting "
                    f"(limits {self.max_concurrent} and {self.max_queue}); retry later"
                ) from None
            c.requests += 1
            c.queued += 1
            try:
                if on_queued is not None:
                    await on_queued()
                await self._slots.acquire()
            except BaseException:
                c.cancelled += 1
                raise
            finally:
                c.queued -= 1
        else:
            c.requests += 1
        c.running += 1
        try:
            yield time.monotonic() - started
        except anyio.get_cancelled_exc_class():
            c.cancelled += 1
            raise
        except Exception:
            c.failed += 1
            raise
        finally:
            c.running -= 1
            self._slots.release()
        c.completed += 1

    def record_tokens(self, n: int) -> None:
        self.counters.completion_tokens += n
        self._recent.append((time.monotonic(), n))

    def tokens_per_s(self) -> float:
        now = time.monotonic()
        while self._recent and now - self._recent[0][0] > RATE_WINDOW_S:
            self._recent.popleft()
        return round(sum(n for _, n in self._recent) / RATE_WINDOW_S, 2)

    def snapshot(self) -> dict[str, Any]:
        c = self.counters
        return {
            "requests": c.requests,
            "completed": c.completed,
            "failed": c.failed,
            "cancelled": c.cancelled,
            "rejected_busy": c.rejected_busy,
            "in_flight": c.running,
            "queued": c.queued,
            "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.completion_tokens,
            "tokens_per_s": self.tokens_per_s(),
            "max_concurrent": self.max_concurrent,
            "max_queue": self.max_queue,
        }
