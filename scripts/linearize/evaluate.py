"""Quality of the hybrid student side by side with its teacher, on a fixed held-out set.

* perplexity on held-out teacher text (the teacher's sampled answers to held-out prompts; only
  the answer tokens count);
* top-1 agreement: on the teacher's 64-token greedy continuations of held-out prompts, how often
  the student's most likely next token is the teacher's (teacher forcing);
* 20 arithmetic questions (greedy; the first integer of the answer), and "right where the
  teacher is right";
* 10 code-review prompts with a planted bug (greedy; a hit when the answer names the bug by one
  of its keywords) — a crude score, the answers go into the table for reading.

Both models decode with the same code (full re-forward per token, batched, right padding), so
a difference is the models', not the decoders'.
"""

from __future__ import annotations

import re
from typing import Any

import torch
import torch.nn.functional as F

from scripts.linearize.data import (
    CODE_REVIEW,
    EVAL_ARITHMETIC_SEED,
    Sample,
    arithmetic_items,
    chat_ids,
)
from scripts.linearize.model import HybridLM


def _pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for r, row in enumerate(rows):
        ids[r, : len(row)] = torch.tensor(row)
        mask[r, : len(row)] = True
    return ids, mask


@torch.no_grad()
def token_logprobs(
    model: HybridLM, rows: list[list[int]], device: Any, batch: int = 16
) -> list[list[float]]:
    """log p(token t | tokens < t) for t >= 1 of every row."""
    out: list[list[float]] = []
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        ids, _ = _pad(chunk, 0)
        logp = F.log_softmax(model(ids.to(device)).float(), dim=-1)
        got = logp[:, :-1].gather(2, ids[:, 1:, None].to(device))[..., 0].cpu()
        out += [got[r, : len(row) - 1].tolist() for r, row in enumerate(chunk)]
    return out


def perplexity(model: HybridLM, samples: list[Sample], device: Any) -> float:
    """exp(mean NLL) over the answer tokens of ``samples``."""
    logps = token_logprobs(model, [s.ids for s in samples], device)
    answer = [lp for s, row in zip(samples, logps, strict=True) for lp in row[s.prompt_len - 1 :]]
    return float(torch.tensor(answer, dtype=torch.float64).neg().mean().exp())


@torch.no_grad()
def greedy(
    model: HybridLM, prompts: list[list[int]], new_tokens: int, device: Any, eos: int | None = None
) -> list[list[int]]:
    """Greedy continuations of all prompts at once: one full forward per new token; each row
    reads its logits at its own last real position (right padding never reaches it)."""
    rows = [list(p) for p in prompts]
    finished = [False] * len(rows)
    for _ in range(new_tokens):
        ids, _ = _pad(rows, 0)
        logits = model(ids.to(device))
        last = torch.tensor([len(r) - 1 for r in rows], device=device)
        nxt = logits[torch.arange(len(rows), device=device), last].argmax(-1).tolist()
        for r, token in enumerate(nxt):
            if not finished[r]:
                rows[r].append(token)
                finished[r] = eos is not None and token == eos
        if all(finished):
            break
    return [r[len(p) :] for r, p in zip(rows, prompts, strict=True)]


@torch.no_grad()
def agreement(
    student: HybridLM, prompts: list[list[int]], continuations: list[list[int]], device: Any
) -> float:
    """Share of continuation positions where the student's argmax is the teacher's token."""
    hits = total = 0
    rows = [p + c for p, c in zip(prompts, continuations, strict=True)]
    ids, _ = _pad(rows, 0)
    pred = student(ids.to(device)).argmax(-1).cpu()
    for r, (p, c) in enumerate(zip(prompts, continuations, strict=True)):
        guess = pred[r, len(p) - 1 : len(p) - 1 + len(c)]
        hits += int((guess == torch.tensor(c)).sum())
        total += len(c)
    return hits / max(1, total)


def answer_integer(text: str) -> int | None:
    """The integer a reply gives as its answer: the first one after its last '=' or
    'answer is' (a small model restates the question first: "38 + 17 = 55"), else its first."""
    number = r"-?\d[\d,]*"
    tail = re.split(r"=|answer is", text)[-1] if re.search(r"=|answer is", text) else text
    match = re.search(number, tail) or re.search(number, text)
    return int(match.group().replace(",", "")) if match else None


def evaluate(
    teacher: HybridLM,
    student: HybridLM,
    tokenizer: Any,
    held_out: list[Sample],
    device: Any,
    agree_prompts: int,
    agree_tokens: int,
    answer_tokens: int,
    review_tokens: int,
) -> dict[str, Any]:
    """All measures for both models; returns a JSON-able dict (``table`` is markdown)."""
    eos = tokenizer.eos_token_id
    result: dict[str, Any] = {
        "perplexity": {
            "teacher": perplexity(teacher, held_out, device),
            "student": perplexity(student, held_out, device),
        },
    }
    prompts = [s.ids[: s.prompt_len] for s in held_out[:agree_prompts]]
    cont = greedy(teacher, prompts, agree_tokens, device)
    result["top1_agreement"] = agreement(student, prompts, cont, device)

    items = arithmetic_items(EVAL_ARITHMETIC_SEED, 20)
    arith_prompts = [chat_ids(tokenizer, it["prompt"]) for it in items]
    decoded = {}
    for name, model in (("teacher", teacher), ("student", student)):
        outs = greedy(model, arith_prompts, answer_tokens, device, eos)
        decoded[name] = [tokenizer.decode(o, skip_special_tokens=True) for o in outs]
    right = {
        n: [answer_integer(t) == it["answer"] for t, it in zip(decoded[n], items, strict=True)]
        for n in decoded
    }
    both = sum(t and s for t, s in zip(right["teacher"], right["student"], strict=True))
    result["arithmetic"] = {
        "teacher_right": sum(right["teacher"]),
        "student_right": sum(right["student"]),
        "student_right_where_teacher_right": both,
        "retained": both / max(1, sum(right["teacher"])),
        "items": [
            {
                "q": it["question"],
                "answer": it["answer"],
                "teacher": decoded["teacher"][i],
                "student": decoded["student"][i],
            }
            for i, it in enumerate(items)
        ],
    }

    review_prompts = [
        chat_ids(tokenizer, f"Review this code and point out the bug:\n\n{code}")
        for code, _ in CODE_REVIEW
    ]
    reviews = {}
    for name, model in (("teacher", teacher), ("student", student)):
        outs = greedy(model, review_prompts, review_tokens, device, eos)
        reviews[name] = [tokenizer.decode(o, skip_special_tokens=True) for o in outs]
    hits = {
        n: [
            any(k.lower() in t.lower() for k in keys)
            for t, (_, keys) in zip(reviews[n], CODE_REVIEW, strict=True)
        ]
        for n in reviews
    }
    result["code_review"] = {
        "teacher_hits": sum(hits["teacher"]),
        "student_hits": sum(hits["student"]),
        "items": [
            {"code": c, "teacher": reviews["teacher"][i], "student": reviews["student"][i]}
            for i, (c, _) in enumerate(CODE_REVIEW)
        ],
    }
    ppl = result["perplexity"]
    ar = result["arithmetic"]
    result["targets"] = {
        "perplexity_ratio": ppl["student"] / ppl["teacher"],
        "perplexity_within_1.5x": ppl["student"] <= 1.5 * ppl["teacher"],
        "arithmetic_retained_at_least_60pct": ar["retained"] >= 0.6,
    }
    result["table"] = table(result)
    return result


def table(r: dict[str, Any]) -> str:
    ppl, ar, cr = r["perplexity"], r["arithmetic"], r["code_review"]
    lines = [
        "| measure | teacher (SmolLM2, all softmax) | student (hybrid) |",
        "|---|---|---|",
        f"| perplexity, held-out teacher text | {ppl['teacher']:.3f} | {ppl['student']:.3f} "
        f"({r['targets']['perplexity_ratio']:.2f}x) |",
        f"| top-1 agreement, greedy continuations | 100% (reference) | {r['top1_agreement']:.1%} |",
        f"| arithmetic right (of 20) | {ar['teacher_right']} | {ar['student_right']} "
        f"({ar['student_right_where_teacher_right']} where the teacher is right, "
        f"{ar['retained']:.0%}) |",
        f"| code review: bug named (of 10) | {cr['teacher_hits']} | {cr['student_hits']} |",
    ]
    return "\n".join(lines) + "\n"


def answers_markdown(r: dict[str, Any]) -> str:
    """Every arithmetic and code-review answer of both models, for reading."""
    out = ["## Arithmetic\n", "| question | answer | teacher | student |", "|---|---|---|---|"]
    for it in r["arithmetic"]["items"]:
        t, s = (it[k].replace("\n", " ").replace("|", "\\|")[:80] for k in ("teacher", "student"))
        out.append(f"| {it['q']} | {it['answer']} | {t} | {s} |")
    out.append("\n## Code review\n")
    for it in r["code_review"]["items"]:
        out += [
            f"```python\n{it['code']}\n```",
            f"**teacher:** {it['teacher']}\n",
            f"**student:** {it['student']}\n",
        ]
    return "\n".join(out) + "\n"
