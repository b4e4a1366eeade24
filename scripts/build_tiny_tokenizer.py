"""Build the byte-level BPE tokenizer of the embedded `tiny-m1` model.

The real MiniMax-M1 tokenizer has 200k tokens; the tiny model has an 8192-token vocabulary, so it
gets its own tokenizer of the same kind (GPT-2 style byte-level BPE) with M1's special tokens and
M1's chat template. It is trained on the `.py` files of the running Python's standard library
(English docstrings and comments plus code), read in sorted order and capped, so every machine
with the same Python version reproduces the same files bit for bit.

Usage: python scripts/build_tiny_tokenizer.py [--out configs/models/tiny-m1]
"""

from __future__ import annotations

import argparse
import json
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

VOCAB_SIZE = 8192
CORPUS_CAP_BYTES = 6 * 1024 * 1024
MODEL_MAX_LENGTH = 65536

# Order defines the ids: the trainer gives special tokens the first ids, in this order, which
# matches pad/bos/eos = 0/1/2 in the tiny config.
SPECIAL_TOKENS = [
    "<pad>",
    "<beginning_of_sentence>",
    "<end_of_sentence>",
    "<end_of_document>",
    "<begin_of_document>",
]
PAD, BOS, EOS, EOD, BOD = SPECIAL_TOKENS

# M1's chat format (see /work/shared/M1_FACTS.md and M1's own tokenizer_config.json), written
# afresh. Semantics kept from M1's template: the document always opens with <begin_of_document>;
# all system messages are joined into one system turn placed first, and there is no default system
# prompt; the tools turn lists one JSON tool per line; each tool message becomes one tool turn with
# a "tool name/tool result" pair per result, each followed by a blank line.
# Extensions (they never change the output for inputs M1's template accepts): content may be a
# plain string as well as a list of {"type": "text", "text": ...} parts; an assistant message's
# OpenAI-style `tool_calls` are rendered the way M1 emits them (<tool_calls>, one JSON per line);
# a tool message with string content takes its tool name from the message's `name`.
CHAT_TEMPLATE = r"""
{%- macro text_of(content) -%}
  {%- if content is none -%}
  {%- elif content is string -%}{{- content -}}
  {%- else -%}
    {%- for part in content -%}
      {%- if part is string -%}{{- part -}}
      {%- elif part['type'] is not defined or part['type'] == 'text' -%}{{- part['text'] -}}
      {%- endif -%}
    {%- endfor -%}
  {%- endif -%}
{%- endmacro -%}
{%- macro call_json(call) -%}
  {%- set fn = call['function'] if call['function'] is defined else call -%}
  {%- set args = fn['arguments'] if fn['arguments'] is defined else {} -%}
  {{- '{"name": ' + (fn['name'] | tojson) + ', "arguments": ' -}}
  {{- (args if args is string else (args | tojson)) + '}' -}}
{%- endmacro -%}
{{- '<begin_of_document>' -}}
{%- set ns = namespace(system='') -%}
{%- for m in messages -%}
  {%- if m['role'] == 'system' -%}
    {%- set ns.system = ns.system + text_of(m['content']) -%}
  {%- endif -%}
{%- endfor -%}
{%- if ns.system != '' -%}
  {{- '<beginning_of_sentence>system ai_setting=assistant\n' + ns.system + '<end_of_sentence>\n' -}}
{%- endif -%}
{%- if tools -%}
  {{- '<beginning_of_sentence>system tool_setting=tools\n' -}}
  {{- 'You are provided with these tools:\n<tools>\n' -}}
  {%- for tool in tools -%}{{- (tool | tojson) + '\n' -}}{%- endfor -%}
  {{- '</tools>\n\nIf you need to call tools, please respond with <tool_calls></tool_calls> ' -}}
  {{- 'XML tags, and provide tool-name and json-object of arguments, following the format ' -}}
  {{- 'below:\n<tool_calls>\n{"name": <tool-name-1>, "arguments": <args-json-object-1>}\n' -}}
  {{- '...\n</tool_calls><end_of_sentence>\n' -}}
{%- endif -%}
{%- for m in messages -%}
  {%- if m['role'] == 'user' -%}
    {{- '<beginning_of_sentence>user name=user\n' + text_of(m['content']) -}}
    {{- '<end_of_sentence>\n' -}}
  {%- elif m['role'] == 'assistant' -%}
    {%- set text = text_of(m['content']) -%}
    {{- '<beginning_of_sentence>ai name=assistant\n' + text -}}
    {%- if m['tool_calls'] is defined and m['tool_calls'] -%}
      {%- if text != '' and not text.endswith('\n') -%}{{- '\n' -}}{%- endif -%}
      {{- '<tool_calls>\n' -}}
      {%- for call in m['tool_calls'] -%}{{- call_json(call) + '\n' -}}{%- endfor -%}
      {{- '</tool_calls>' -}}
    {%- endif -%}
    {{- '<end_of_sentence>\n' -}}
  {%- elif m['role'] == 'tool' -%}
    {{- '<beginning_of_sentence>tool name=tools\n' -}}
    {%- if m['content'] is string -%}
      {%- set name = m['name'] if m['name'] is defined and m['name'] else '' -%}
      {{- 'tool name: ' + name + '\ntool result: ' + m['content'] + '\n\n' -}}
    {%- else -%}
      {%- for part in m['content'] -%}
        {{- 'tool name: ' + part['name'] + '\ntool result: ' + part['text'] + '\n\n' -}}
      {%- endfor -%}
    {%- endif -%}
    {{- '<end_of_sentence>\n' -}}
  {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<beginning_of_sentence>ai name=assistant\n' -}}
  {#- enable_thinking: true opens the reasoning block, false writes an empty one -#}
  {%- if enable_thinking is defined and enable_thinking is not none -%}
    {{- '<think>\n' if enable_thinking else '<think>\n\n</think>\n\n' -}}
  {%- endif -%}
{%- endif -%}
""".strip()


def corpus_files() -> list[Path]:
    """The stdlib's .py files in a fixed order (test data and site-packages left out)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "test", "tests", "idlelib", "lib2to3", "__pycache__"}
    files = [p for p in stdlib.rglob("*.py") if not skip.intersection(p.relative_to(stdlib).parts)]
    return sorted(files, key=lambda p: p.relative_to(stdlib).as_posix())


def corpus(cap: int = CORPUS_CAP_BYTES) -> Iterator[str]:
    """Yield file texts until `cap` bytes have been produced."""
    used = 0
    for path in corpus_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        yield text
        used += len(text.encode("utf-8"))
        if used >= cap:
            return


def train(cap: int = CORPUS_CAP_BYTES) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    # No prefix space: M1's tokenizer is GPT-2 style without add_prefix_space.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(cap), trainer=trainer)
    size = tok.get_vocab_size(with_added_tokens=True)
    if size != VOCAB_SIZE:
        raise RuntimeError(f"trained vocabulary has {size} tokens, want {VOCAB_SIZE}")
    for want, token in enumerate(SPECIAL_TOKENS):
        if tok.token_to_id(token) != want:
            raise RuntimeError(f"{token} got id {tok.token_to_id(token)}, want {want}")
    return tok


def tokenizer_config() -> dict:
    added = {
        str(i): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for i, t in enumerate(SPECIAL_TOKENS)
    }
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": added,
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "unk_token": EOD,
        "add_bos_token": False,
        "add_eos_token": False,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": MODEL_MAX_LENGTH,
        "chat_template": CHAT_TEMPLATE,
    }


def special_tokens_map() -> dict:
    return {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD, "unk_token": EOD}


def generation_config() -> dict:
    return {
        "bos_token_id": SPECIAL_TOKENS.index(BOS),
        "eos_token_id": SPECIAL_TOKENS.index(EOS),
        "pad_token_id": SPECIAL_TOKENS.index(PAD),
        "do_sample": True,
        "temperature": 1.0,
        "top_p": 0.95,
    }


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    repo = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=repo / "configs" / "models" / "tiny-m1")
    parser.add_argument("--cap-bytes", type=int, default=CORPUS_CAP_BYTES)
    args = parser.parse_args(argv)

    tok = train(args.cap_bytes)
    args.out.mkdir(parents=True, exist_ok=True)
    tok.save(str(args.out / "tokenizer.json"))
    write_json(args.out / "tokenizer_config.json", tokenizer_config())
    write_json(args.out / "special_tokens_map.json", special_tokens_map())
    write_json(args.out / "generation_config.json", generation_config())
    print(
        f"wrote {VOCAB_SIZE}-token tokenizer to {args.out} "
        f"(corpus: Python {sys.version.split()[0]} stdlib)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
