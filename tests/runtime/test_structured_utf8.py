"""Guided JSON holds only well-formed UTF-8, so the grammar's character count is the text's.

Issue 12, defect 2: xgrammar took ED A0 80 (the UTF-8 form of the surrogate U+D800, which is
not UTF-8) as one string character; the detokenizer renders it as three U+FFFD, so a string
filled to its maxLength came back two characters over. A random-weight model picks that byte
sequence rarely (about 3% of tool calls), so this test makes it likely: a large logit bias on the
byte tokens ED, A0 and 80 steers the model into them wherever the grammar lets it. A grammar that
counts the surrogate as a character produces "\\ufffd" * 12 for a 4-character string; a correct
one takes ED 80 80 (U+D000) instead, which is a real character.

The engine is vLLM's, with the structured-outputs configuration our Engine uses.
"""

from __future__ import annotations

import json

import jsonschema
import pytest

from m1_runtime.engine.checkpoints import resolve_model
from m1_runtime.engine.engine import STRUCTURED_OUTPUTS
from tests.runtime.vllm_helpers import random_prompt, running_engine, tokens_prompt

pytestmark = pytest.mark.slow

MAX_LENGTH = 4
SCHEMA = {
    "type": "object",
    "properties": {"s": {"type": "string", "maxLength": MAX_LENGTH}},
    "required": ["s"],
    "additionalProperties": False,
}
SEEDS = range(6)


def _byte_level_ids(tokenizer) -> dict[int, int]:
    """Token id of each single-byte token of a GPT-2 style byte-level vocabulary."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    vocab = tokenizer.get_vocab()
    return {b: vocab[c] for b, c in chars.items() if c in vocab}


def test_guided_strings_are_utf8_and_within_max_length() -> None:
    from vllm.config import StructuredOutputsConfig
    from vllm.sampling_params import SamplingParams, StructuredOutputsParams

    with running_engine(
        resolve_model("tiny-m1"),
        max_model_len=256,
        max_num_seqs=len(SEEDS),
        structured_outputs_config=StructuredOutputsConfig(**STRUCTURED_OUTPUTS),
    ) as llm:
        byte_id = _byte_level_ids(llm.get_tokenizer())
        # ED A0 80 is the surrogate; ED 80 80 is U+D000. Bias A0 above 80 so a grammar that
        # allows the surrogate is steered into it.
        bias = {byte_id[0xED]: 40.0, byte_id[0xA0]: 45.0, byte_id[0x80]: 30.0}
        params = [
            SamplingParams(
                temperature=1.0,
                seed=seed,
                max_tokens=64,
                logit_bias=bias,
                structured_outputs=StructuredOutputsParams(json=SCHEMA),
            )
            for seed in SEEDS
        ]
        prompts = [tokens_prompt(random_prompt(12, seed)) for seed in SEEDS]
        outputs = llm.generate(prompts, params, use_tqdm=False)
        tokenizer = llm.get_tokenizer()

    steered = 0
    for out in outputs:
        completion = out.outputs[0]
        text = completion.text
        assert completion.finish_reason == "stop", (completion.finish_reason, text)
        # What the detokenizer produced is what the token ids decode to.
        assert text == tokenizer.decode(completion.token_ids, skip_special_tokens=True)
        assert "\ufffd" not in text, (text, list(completion.token_ids))
        document = json.loads(text)
        jsonschema.validate(document, SCHEMA)
        assert len(document["s"]) <= MAX_LENGTH
        # The bias did reach the string: its characters start with the ED byte (U+D000-U+D7FF),
        # so the surrogate was on offer at every character.
        steered += any("\ud000" <= ch <= "\ud7ff" for ch in document["s"])
    assert steered == len(SEEDS), [o.outputs[0].text for o in outputs]
