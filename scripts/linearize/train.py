"""The two training stages and the layer-map choice between them.

Stage 1 (layer-wise attention transfer): every lightning candidate sees the teacher's own
normed hidden states at its layer and learns to reproduce the teacher's attention output there
(relative squared error). The candidates are independent given the teacher's states, so one
teacher pass trains all of them at once, and their final errors say which layers a lightning
layer imitates worst: those stay softmax.

Stage 2 (end-to-end distillation): the hybrid student's next-token distribution is pulled
toward the teacher's (KL(teacher || student), every real token), training the lightning layers'
adapters and norms and low-rank adapters on every MLP.

Both stages stop at a step count or a wall-clock budget, whichever comes first; the learning
rate follows that progress (warm-up, then cosine to zero), so a run cut short by the clock
still ends annealed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from scripts.linearize.model import HybridLM


@dataclass
class Progress:
    steps: int
    budget_s: float
    warmup: float = 0.05
    start: float = field(default_factory=time.monotonic)
    step: int = 0

    def fraction(self) -> float:
        elapsed = time.monotonic() - self.start
        return max(self.step / max(1, self.steps), elapsed / self.budget_s if self.budget_s else 0)

    def lr_scale(self) -> float:
        f = min(1.0, self.fraction())
        if f < self.warmup:
            return max(0.05, f / self.warmup)
        return 0.5 * (1 + math.cos(math.pi * (f - self.warmup) / (1 - self.warmup)))

    def done(self) -> bool:
        return self.fraction() >= 1.0


def _optimizer(groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    return torch.optim.AdamW([g for g in groups if g["params"]], betas=(0.9, 0.99), weight_decay=0)


def _param_groups(params: list[torch.nn.Parameter], lr: float, norm_lr: float) -> list[dict]:
    # The norm weights set the lightning output's scale (the RMSNorm removes it): a larger rate
    # lets them reach the teacher's attention-output scale in a few steps.
    norms = [p for p in params if p.dim() == 1]
    others = [p for p in params if p.dim() != 1]
    return [
        {"params": others, "lr": lr, "base": lr},
        {"params": norms, "lr": norm_lr, "base": norm_lr},
    ]


def _set_lr(opt: torch.optim.Optimizer, scale: float) -> None:
    for g in opt.param_groups:
        g["lr"] = g["base"] * scale


def masked_relative_error(
    y: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    m = mask[..., None].to(y.dtype)
    return ((y - target).pow(2) * m).sum() / ((target.pow(2) * m).sum() + 1e-12)


@torch.no_grad()
def calibrate_scales(
    teacher: HybridLM, student: HybridLM, data: Iterator, device: Any, layers: list[int]
) -> None:
    """Scale each candidate's norm weights (ones) so its output's RMS matches the teacher's
    attention output on one batch. The lightning layer's RMSNorm discards the scale, so at
    ones the output is far larger than the teacher's (relative errors of ~10 in a toy run)
    and the first steps would be spent shrinking it."""
    ids, mask = next(data)
    ids, mask = ids.to(device), mask.to(device)
    for i, (h, target) in enumerate(teacher.capture(ids)):
        lightning = student.layers[i].lightning
        if i not in layers or lightning is None:
            continue
        y = lightning(h)
        m = mask[..., None].float()
        ratio = ((target.pow(2) * m).sum() / ((y.pow(2) * m).sum() + 1e-12)).sqrt()
        lightning.norm_weight.mul_(ratio)


def stage1(
    teacher: HybridLM,
    student: HybridLM,
    data: Iterator,
    device: Any,
    steps: int,
    budget_s: float,
    lr: float,
    norm_lr: float,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Train every lightning candidate on the teacher's states; returns per-layer errors."""
    layers = [i for i, layer in enumerate(student.layers) if layer.lightning is not None]
    calibrate_scales(teacher, student, data, device, layers)
    opt = _optimizer(_param_groups(student.trainable("1"), lr, norm_lr))
    progress = Progress(steps, budget_s)
    history: list[dict[str, Any]] = []
    ema: dict[int, float] = {}
    while not progress.done():
        ids, mask = next(data)
        ids, mask = ids.to(device), mask.to(device)
        captured = teacher.capture(ids)
        total = torch.zeros((), device=device)
        errors = {}
        for i in layers:
            h, target = captured[i]
            lightning = student.layers[i].lightning
            assert lightning is not None
            err = masked_relative_error(lightning(h), target, mask)
            errors[i] = err.item()
            total = total + err
        opt.zero_grad(set_to_none=True)
        (total / len(layers)).backward()
        _set_lr(opt, progress.lr_scale())
        opt.step()
        for i, e in errors.items():
            ema[i] = e if i not in ema else 0.9 * ema[i] + 0.1 * e
        if progress.step == 0:
            history.append({"step": 0, "errors": {str(i): errors[i] for i in layers}})
        progress.step += 1
        if progress.step % 10 == 0 or progress.done():
            mean = sum(errors.values()) / len(errors)
            log(f"stage 1 step {progress.step}: mean relative error {mean:.4f}")
            history.append({"step": progress.step, "mean_error": mean})
    return {
        "steps": progress.step,
        "seconds": time.monotonic() - progress.start,
        "final_errors": {str(i): ema[i] for i in layers},
        "history": history,
    }


def choose_layer_map(num_layers: int, spec: str, errors: dict[str, float]) -> tuple[list[int], str]:
    """attn_type_list from ``spec``: ``auto:K`` keeps softmax on the K layers whose lightning
    candidates matched the teacher worst after stage 1; ``m1`` is M1's pattern (every 8th layer
    softmax); otherwise a comma list of softmax layer indices."""
    if spec.startswith("auto:"):
        k = int(spec.split(":")[1])
        ranked = sorted(errors, key=lambda i: errors[i], reverse=True)
        softmax = sorted(int(i) for i in ranked[:k])
        why = (
            f"softmax on the {k} layers with the largest stage-1 relative error "
            f"({', '.join(f'{i}: {errors[str(i)]:.3f}' for i in softmax)})"
        )
    elif spec == "m1":
        softmax = [i for i in range(num_layers) if (i + 1) % 8 == 0] or [num_layers - 1]
        why = "M1's pattern: every 8th layer softmax"
    else:
        softmax = sorted(int(x) for x in spec.split(",") if x.strip())
        why = "softmax layers given on the command line"
    if any(not 0 <= i < num_layers for i in softmax):
        raise ValueError(f"softmax layers {softmax} outside 0..{num_layers - 1}")
    return [1 if i in softmax else 0 for i in range(num_layers)], why


def sweep_layer_maps(
    teacher: HybridLM,
    student: HybridLM,
    samples: list,
    device: Any,
    spec: str,
    errors: dict[str, float],
) -> list[dict[str, Any]]:
    """``sweep:K1,K2,..``: for each K, the ``auto:K`` map and the student's perplexity with it
    after stage 1 (MLP adapters still zero), next to the teacher's (K = all layers)."""
    from scripts.linearize.evaluate import perplexity

    n = len(student.layers)
    rows = [
        {"softmax_layers": n, "kinds": [1] * n, "perplexity": perplexity(teacher, samples, device)}
    ]
    for k in sorted({int(x) for x in spec.split(":", 1)[1].split(",")}):
        kinds, _ = choose_layer_map(n, f"auto:{k}", errors)
        student.set_kinds(kinds)
        rows.append(
            {
                "softmax_layers": k,
                "kinds": kinds,
                "perplexity": perplexity(student, samples, device),
            }
        )
    return rows


def pick_from_sweep(sweep: list[dict[str, Any]], ratio: float) -> tuple[list[int], str]:
    """The fewest softmax layers whose post-stage-1 perplexity is within ``ratio`` of the
    teacher's (stage 2 then closes part of the gap); the most softmax layers swept if none is."""
    teacher, *rows = sweep
    bound = ratio * teacher["perplexity"]
    fits = [r for r in rows if r["perplexity"] <= bound]
    chosen = (
        min(fits, key=lambda r: r["softmax_layers"])
        if fits
        else max(rows, key=lambda r: r["softmax_layers"])
    )
    scores = ", ".join(f"{r['softmax_layers']}: {r['perplexity']:.2f}" for r in rows)
    why = (
        f"sweep after stage 1 (teacher {teacher['perplexity']:.2f}; softmax layers: perplexity "
        f"{scores}): {chosen['softmax_layers']} softmax layers, "
        + ("the fewest within" if fits else "none within")
        + f" {ratio}x the teacher; softmax on the layers with the largest stage-1 error"
    )
    return list(chosen["kinds"]), why


def kl_to_teacher(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Mean over real tokens of KL(teacher || student), in float32."""
    t = F.log_softmax(teacher_logits.float(), dim=-1)
    s = F.log_softmax(student_logits.float(), dim=-1)
    kl = (t.exp() * (t - s)).sum(-1)
    return (kl * mask).sum() / mask.sum()


def stage2(
    teacher: HybridLM,
    student: HybridLM,
    data: Iterator,
    device: Any,
    steps: int,
    budget_s: float,
    lr: float,
    norm_lr: float,
    log: Callable[[str], None],
) -> dict[str, Any]:
    opt = _optimizer(_param_groups(student.trainable("2"), lr, norm_lr))
    progress = Progress(steps, budget_s)
    history: list[dict[str, Any]] = []
    while not progress.done():
        ids, mask = next(data)
        ids, mask = ids.to(device), mask.to(device)
        with torch.no_grad():
            target = teacher(ids)
        loss = kl_to_teacher(student(ids), target, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.trainable("2"), 1.0)
        _set_lr(opt, progress.lr_scale())
        opt.step()
        if progress.step == 0:
            history.append({"step": 0, "kl": loss.item()})
        progress.step += 1
        if progress.step % 10 == 0 or progress.done():
            log(f"stage 2 step {progress.step}: KL {loss.item():.4f}")
            history.append({"step": progress.step, "kl": loss.item()})
    return {
        "steps": progress.step,
        "seconds": time.monotonic() - progress.start,
        "history": history,
    }
