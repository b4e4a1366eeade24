"""A fixed set of tool calls for smol-m1, the default model, and what counts as a sensible answer.

Shared by the slow test (`test_smol_m1_tools.py`: structure and non-degeneracy, never the words)
and `scripts/smol_tool_table.py`, which records what the model returns in
`docs/smol-m1-tools.md`. Greedy where the tool takes a temperature, so the table reproduces.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

BUGGY_MAX = """def largest(xs):
    best = 0
    for i in range(1, len(xs)):
        if xs[i] > best:
            best = xs[i]
    return best
"""
MEAN = "def mean(xs):\n    return sum(xs) / len(xs)\n"
SQUARES = """result = []
for i in range(10):
    if i % 2 == 0:
        result.append(i * i)
print(result)
"""
JS_FETCH = """function getUser(id) {
  fetch('/api/users/' + id).then(r => r.json()).then(u => { user = u; });
  return user;
}
"""
DOC = (
    "Solar panels turn sunlight into electricity. Their price fell by about 90 percent between "
    "2010 and 2020, and many countries now install more solar capacity each year than any other "
    "kind of power plant. Panels produce nothing at night, so grids pair them with batteries, "
    "wind power or gas plants. Recycling old panels is a growing problem."
)
WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def server_env() -> dict[str, str]:
    """The test harness's environment with smol-m1 and its own context and answer budget."""
    from tests.e2e import harness

    return harness.server_env(
        M1_MCP_MODEL="smol-m1", M1_MCP_MAX_MODEL_LEN="8192", M1_MCP_DEFAULT_MAX_TOKENS="512"
    )


# (label, tool, arguments)
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("multiply", "solve_problem", {"problem": "What is 17*3?", "max_tokens": 160}),
    ("divide", "solve_problem", {"problem": "What is 144 divided by 12?", "max_tokens": 160}),
    ("power", "solve_problem", {"problem": "What is 2 to the power of 10?", "max_tokens": 160}),
    (
        "speed",
        "solve_problem",
        {
            "problem": "A train travels 60 km in 1.5 hours. What is its average speed in km/h?",
            "max_tokens": 200,
        },
    ),
    (
        "limit",
        "solve_problem",
        {"problem": "What is the limit of sin(x)/x as x approaches 0?", "max_tokens": 200},
    ),
    (
        "practice-fractions",
        "practice_problems",
        {"topic": "adding fractions", "difficulty": "easy", "count": 2},
    ),
    (
        "practice-percent",
        "practice_problems",
        {"topic": "percentages", "difficulty": "medium", "count": 2},
    ),
    ("doc-summary", "analyze_document", {"text": DOC, "mode": "summary"}),
    ("doc-qa", "analyze_document", {"text": DOC, "mode": "qa"}),
    ("doc-insights", "analyze_document", {"text": DOC, "mode": "insights"}),
    ("review-largest", "review_code", {"code": BUGGY_MAX, "language": "python"}),
    ("review-mean", "review_code", {"code": MEAN, "language": "python", "focus": "empty input"}),
    ("review-js", "review_code", {"code": JS_FETCH, "language": "javascript"}),
    ("improve-squares", "suggest_improvements", {"code": SQUARES, "language": "python"}),
    (
        "chat-colours",
        "chat",
        {
            "messages": [{"role": "user", "content": "Name the three primary colours of light."}],
            "temperature": 0.0,
            "max_tokens": 96,
        },
    ),
    (
        "chat-tool",
        "chat",
        {
            "messages": [{"role": "user", "content": "What is the weather in Paris right now?"}],
            "tools": [WEATHER],
            "temperature": 0.0,
            "max_tokens": 96,
        },
    ),
]


def texts(value: Any) -> list[str]:
    """Every string in a tool's structured result, usage figures left out."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for k, v in value.items() if k != "usage" for t in texts(v)]
    if isinstance(value, list):
        return [t for v in value for t in texts(v)]
    return []


def degeneracy(result: dict[str, Any]) -> str | None:
    """Why a result looks degenerate (nothing written, or one phrase repeated), else None."""
    words = re.findall(r"\w+", " ".join(texts(result)).lower())
    if len(words) < 2:
        return f"almost no text: {words}"
    if len(words) >= 30:
        grams = [tuple(words[i : i + 4]) for i in range(len(words) - 3)]
        distinct = len(set(grams)) / len(grams)
        if distinct < 0.5:
            return f"repeats itself ({distinct:.0%} distinct 4-word runs)"
    lines = [line.strip() for t in texts(result) for line in t.splitlines() if line.strip()]
    for line in set(lines):
        if len(line) > 10 and lines.count(line) >= 4:
            return f"the line {line[:60]!r} comes {lines.count(line)} times"
    return None


async def run_case(client: Any, tool: str, args: dict[str, Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = await client.call_tool(tool, args)
    return result, time.monotonic() - started


def brief(tool: str, result: dict[str, Any], limit: int = 220) -> str:
    """What the table shows of a result: the fields a reader looks at first."""
    if tool == "solve_problem":
        shown = f"answer: {result['answer']!r}; solution: {result['solution']}"
    elif tool == "chat":
        calls = [f"{c['name']}({json.dumps(c['arguments'])})" for c in result["tool_calls"]]
        shown = (f"calls {', '.join(calls)}; " if calls else "") + result["text"]
    else:
        body = {k: v for k, v in result.items() if k not in ("usage", "language", "mode")}
        shown = json.dumps(body, ensure_ascii=False)
    shown = " ".join(shown.split())
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"
