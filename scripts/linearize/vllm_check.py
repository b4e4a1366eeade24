"""Build the hybrid checkpoint from a delta and check that our vLLM plugin runs it as trained.

    python -m scripts.linearize.vllm_check --delta OUT/delta --out OUT [--dtype float32]

Writes ``OUT/checkpoint/`` (the smol-m1-hybrid checkpoint) and ``OUT/vllm_check.json``: the
largest prompt log-probability difference between vLLM and the training-side model with the
delta's adapters, on a few chat prompts, plus vLLM's greedy answers. On a GPU this runs the
lightning layers through the Triton kernels, with the trained weights.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

PROMPTS = [
    "What is 17 * 3? Answer with the number only.",
    "Explain in two sentences why the sky is blue.",
    "Review this code and point out the bug:\n\ndef last(xs):\n    return xs[len(xs)]",
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--delta", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--gguf", type=Path)
    args = ap.parse_args(argv)

    import torch
    import torch.nn.functional as F
    from vllm import LLM, SamplingParams

    from m1_runtime.engine import smol_m1, smol_m1_hybrid
    from scripts.linearize.cli import student_from_delta
    from scripts.linearize.data import chat_ids

    source = args.gguf or smol_m1.gguf_path()
    ckpt = args.out / "checkpoint"
    ckpt.mkdir(parents=True, exist_ok=True)
    smol_m1_hybrid.write_checkpoint(ckpt, source, args.delta)
    model, tok = smol_m1.load_source(source)
    base_config = smol_m1.m1_config(model.config, tok)
    _, manifest = smol_m1_hybrid.load_delta(args.delta)
    base = smol_m1_hybrid.truncate(
        smol_m1.m1_tensors(model.state_dict(), base_config), manifest["num_layers"]
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    trained = student_from_delta(
        {k: v.to(device) for k, v in base.items()}, base_config, args.delta, device
    )
    prompts = [chat_ids(tok, p) for p in PROMPTS]

    llm = LLM(
        model=str(ckpt),
        dtype=args.dtype,
        max_model_len=2048,
        enforce_eager=True,
        seed=0,
        kv_cache_memory_bytes=512 << 20,  # CPU runs need it explicit (tests/runtime)
    )
    params = SamplingParams(temperature=0.0, max_tokens=48, prompt_logprobs=0)
    outs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
    worst = 0.0
    answers = []
    for prompt, out in zip(prompts, outs, strict=True):
        got = torch.tensor(
            [step[t].logprob for t, step in zip(prompt[1:], out.prompt_logprobs[1:], strict=True)]
        )
        ids = torch.tensor([prompt], device=device)
        with torch.no_grad():
            logp = F.log_softmax(trained(ids)[0].double(), -1)[:-1]
            want = logp.gather(1, ids[0, 1:, None])[:, 0].cpu()
        worst = max(worst, float((got.double() - want).abs().max()))
        answers.append(out.outputs[0].text)
    result = {"dtype": args.dtype, "largest_prompt_logprob_difference": worst, "answers": answers}
    (args.out / "vllm_check.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
