"""Guided JSON: the schema the grammar enforces, a token budget it always closes within, and
reading the model's document back into its pydantic model.

Every schema we guide with caps its strings (maxLength) and arrays (maxItems), so the longest
document it allows is finite; `schema_budget` turns that into a token count. A field whose size
follows the input (refactored code) is budgeted by the tool in the tokenizer's own tokens
instead: see code_review.py.
"""

from __future__ import annotations

import json
import logging
from typing import Any, TypeVar

from pydantic import BaseModel

from m1_runtime.chat.m1 import Message
from m1_runtime.engine import EngineError, Generation, GenerationRequest, Sampling

log = logging.getLogger("m1.tools")

# A token carries at least one character, and one character of a JSON string takes at most two
# (an escape such as \n) with whitespace disabled, so these bound a document's tokens.
TOKENS_PER_STRING_CHAR = 2
STRING_QUOTES = 2  # the quotes around a string
ARRAY_BRACKETS = 2
ITEM_SEPARATOR = 1  # the comma after an array item
OBJECT_BRACES = 2
KEY_PUNCTUATION = 4  # a key's quotes, its colon and the comma after its value
BOOLEAN_CHARS = len("false")
NULL_CHARS = len("null")

M = TypeVar("M", bound=BaseModel)


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


def schema_budget(schema: dict[str, Any]) -> int:
    """An upper bound on the tokens a JSON document matching `schema` can take.

    The engine gets this as max_tokens, so the document always closes before the budget ends.
    A schema node without a bound (a string without maxLength, an open integer) is refused.
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
            return STRING_QUOTES + TOKENS_PER_STRING_CHAR * int(node["maxLength"])
        if kind == "integer":
            # The grammar bounds digits only through a range; an open integer never ends.
            lo, hi = node.get("minimum"), node.get("maximum")
            if lo is None or hi is None:
                raise ValueError(f"integer without minimum and maximum: {node}")
            return max(len(str(lo)), len(str(hi)))
        if kind == "boolean":
            return BOOLEAN_CHARS
        if kind == "null":
            return NULL_CHARS
        if kind == "array":
            return ARRAY_BRACKETS + int(node["maxItems"]) * (size(node["items"]) + ITEM_SEPARATOR)
        if kind == "object":
            props = node.get("properties", {})
            return OBJECT_BRACES + sum(len(k) + KEY_PUNCTUATION + size(v) for k, v in props.items())
        raise ValueError(f"schema node without a bounded type: {node}")

    return size(schema)


def json_request(messages: list[Message], schema: dict[str, Any], budget: int) -> GenerationRequest:
    """A guided request: default sampling, thinking off (the grammar holds from the first token)."""
    return GenerationRequest(
        messages=messages, max_tokens=budget, json_schema=schema, sampling=Sampling()
    )


def read_payload(model: type[M], gen: Generation) -> M:
    """The guided document as `model`; an EngineError (saying how the generation ended) if not."""
    try:
        # strict=False: the grammar may let raw control characters into strings, which
        # Python's JSON reader accepts only when told to; the content is still what we asked.
        return model.model_validate(json.loads(gen.text, strict=False))
    except ValueError as exc:
        # Should not happen with guided decoding inside the schema's budget; say so plainly.
        log.error("guided output did not validate (%s): %r", exc, gen.raw_text[:500])
        if gen.finish_reason == "length":
            raise EngineError(
                f"the model's structured answer used its whole budget of {gen.completion_tokens} "
                "tokens without finishing; send a shorter input"
            ) from exc
        raise EngineError(
            f"the model's structured output did not validate (finish: {gen.finish_reason})"
        ) from exc
