"""Hostile tool calls, generated from the tools' own input schemas, and how to judge a reply.

Each case starts from one cheap valid call per tool (`harness.tool_calls`) and changes one
thing: a field replaced by a value of the wrong type, past its bounds, blank, oversized,
deeply nested or full of control characters, lone surrogates and the model's special-token
strings; a required field dropped; an unknown field added; an unknown tool. Most cases are
invalid by construction and must be refused before the model is asked; a few keep the call
valid with hostile text inside, and those generate (with small budgets).

A reply is *explained* when it is a result, or an error whose text says more than the SDK's
bare "Error executing tool <name>" (the mask it puts on exceptions nobody anticipated), or a
JSON-RPC error other than "internal error". Anything else is a defect.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Any

# Strings a model's tokenizer or a careless parser may treat specially.
SPECIAL_STRINGS = [
    "<end_of_sentence>",
    "<beginning_of_sentence>system ai_setting=x\n",
    "<think></think>",
    "<tool_calls>\n{}\n</tool_calls>",
    "<|im_start|>system\n",
    "<|endoftext|>",
    "\\boxed{",
    "}}}}{{{{",
]
CONTROL = "".join(chr(c) for c in range(0, 32)) + "\x7f"


@dataclass
class Case:
    tool: str
    args: Any
    what: str
    # Whether the call may pass validation and generate (bounded per run: generating costs
    # seconds a call). Every case is judged the same way (`verdict`).
    valid: bool = False


def _hostile_values(rng: random.Random) -> list[tuple[str, Any]]:
    """(label, value) for replacing any one field."""
    deep: Any = "x"
    for _ in range(40):  # the SDK's client refuses to serialise much deeper
        deep = {"a": [deep]}
    return [
        ("null", None),
        ("true", True),
        ("zero", 0),
        ("negative", -1),
        ("huge int", 2**70),
        ("huge negative int", -(2**70)),
        ("float", 3.5),
        ("tiny float", 1e-308),
        ("huge float", 1e308),
        ("empty string", ""),
        ("blank string", " \t\n "),
        ("long string", "x" * rng.choice([400_001, 1_000_000])),
        ("control characters", CONTROL),
        ("special tokens", " ".join(SPECIAL_STRINGS)),
        ("empty list", []),
        ("list of junk", [None, 1, "a", {}]),
        ("long list", ["a"] * rng.choice([100, 10_000])),
        ("empty object", {}),
        ("object", {"role": "user", "content": 5}),
        ("deep nesting", deep),
        ("path traversal", "../../../../etc/passwd"),
        ("absolute path", "/proc/self/environ"),
        ("NUL path", "mean.py\x00.txt"),
    ]


def _valid_hostile_texts() -> list[tuple[str, str]]:
    return [
        ("special tokens", "Explain: " + " ".join(SPECIAL_STRINGS)),
        ("control characters", "x = 1" + CONTROL.replace("\x00", "")),
        ("unicode", "Ünïcødé ✓ 漢字 🙂 \u200b\u202e right-to-left"),
        ("json-like", '{"answer": "42", "usage": null}'),
    ]


# The field of each tool that carries free text, for the valid-but-hostile cases.
TEXT_FIELD = {
    "solve_problem": "problem",
    "practice_problems": "topic",
    "analyze_document": "text",
    "review_code": "code",
    "suggest_improvements": "code",
}


def generate(
    base_calls: dict[str, dict[str, Any]],
    schemas: dict[str, dict[str, Any]],
    n: int,
    seed: int,
    max_valid: int = 80,
) -> list[Case]:
    """`n` cases (deterministic for a seed), covering every tool and every mutation kind; at
    most `max_valid` of them may pass validation (those generate, which costs seconds each)."""
    rng = random.Random(seed)
    cases: list[Case] = []
    tools = sorted(base_calls)
    # The valid-but-hostile cases: each text field, each hostile text, once.
    for tool, field in sorted(TEXT_FIELD.items()):
        for label, text in _valid_hostile_texts():
            args = copy.deepcopy(base_calls[tool])
            args.pop("path", None)
            args[field] = text
            cases.append(Case(tool, args, f"{field}: {label}", valid=True))
    for label, text in _valid_hostile_texts():
        args = copy.deepcopy(base_calls["chat"])
        args["messages"] = [{"role": "user", "content": text}]
        args.pop("tools", None)
        cases.append(Case("chat", args, f"messages[0].content: {label}", valid=True))
    while len(cases) < n:
        tool = rng.choice(tools)
        base = base_calls[tool]
        props = sorted(schemas[tool].get("properties", {}))
        kind = rng.random()
        if kind < 0.04:
            cases.append(Case(f"no_such_tool_{rng.randrange(1000)}", base, "unknown tool"))
        elif kind < 0.10:
            args = copy.deepcopy(base)
            args[f"unknown_{rng.randrange(100)}"] = rng.choice([1, "x", None, {"a": 1}])
            # Refused or ignored (the server documents which): either way it is judged as a
            # call that may be valid.
            cases.append(Case(tool, args, "unknown field", valid=True))
        elif kind < 0.16:
            required = schemas[tool].get("required", [])
            if not required:
                continue
            args = copy.deepcopy(base)
            field = rng.choice(required)
            args.pop(field, None)
            cases.append(Case(tool, args, f"missing {field}"))
        elif kind < 0.20:
            # (Non-object arguments never leave the SDK's client; the protocol tests send them.)
            cases.append(Case(tool, {}, "no arguments"))
        else:
            field = rng.choice(props)
            label, value = rng.choice(_hostile_values(rng))
            args = copy.deepcopy(base)
            args[field] = value
            cases.append(Case(tool, args, f"{field}: {label}", valid=_maybe_valid(label, value)))
        if sum(c.valid for c in cases) > max_valid:
            cases.pop()
    return cases[:n]


def _maybe_valid(label: str, value: Any) -> bool:
    """Whether a one-field change might still pass validation, and so generate: a non-blank
    string of a sane size, or a small scalar (lax validation turns `true` into 1)."""
    if isinstance(value, str):
        return label not in {"empty string", "blank string", "long string"}
    return isinstance(value, bool | int | float) and abs(value) < 2**63


def verdict(tool: str, is_error: bool, text: str) -> str | None:
    """None when the reply is explained; else why it is not."""
    if not is_error:
        return None
    stripped = text.strip()
    if not stripped:
        return "an error with no message"
    if stripped == f"Error executing tool {tool}" or "Traceback" in stripped:
        return f"an unexplained error: {stripped[:200]!r}"
    return None
