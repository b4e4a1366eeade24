"""benchmarks/gpu_quant.py's bookkeeping, which must be right before its one GPU run: which
runs go first, and how a run is scored against bf16."""

from __future__ import annotations

import pytest

from benchmarks import gpu_quant


def test_bf16_runs_go_first_and_unknown_runs_are_refused() -> None:
    assert gpu_quant.parse_runs("fp8-graphs, bf16-eager,fp8-graphs,bf16-graphs") == [
        "bf16-eager",
        "bf16-graphs",
        "fp8-graphs",
    ]
    for bad in ("int4-graphs", "fp8-compiled", " , "):
        with pytest.raises(ValueError):
            gpu_quant.parse_runs(bad)
    with pytest.raises(SystemExit):  # argparse's error exit, with the list of runs
        gpu_quant.main(["--runs", "fp8"])


def _result(run: str, logprobs: list[list[float]], top1: list[list[int]], agree: list[int]):
    quant, graphs = gpu_quant.split_run(run)
    return {
        "run": run,
        "quantization": quant,
        "cuda_graphs": graphs,
        "scored": {"logprobs": logprobs, "top1": top1},
        "agree_before_divergence": agree,
    }


def test_scoring_against_bf16() -> None:
    ref = _result("bf16-graphs", [[-1.0, -2.0], [-0.5, -3.0]], [[5, 6], [7, 8]], [2, 2])
    run = _result("fp8-graphs", [[-1.5, -2.0], [-0.5, -2.0]], [[5, 9], [7, 8]], [1, 2])
    got = gpu_quant.compare(run, ref)
    assert got["positions"] == 4
    assert got["top1_agreement"] == 0.75
    assert got["mean_abs_dlogprob"] == pytest.approx(0.375)
    assert got["max_abs_dlogprob"] == pytest.approx(1.0)
    assert got["mean_tokens_before_divergence"] == 1.5
    # A quantized run is held to bf16 in its own graph mode; bf16 to bf16 in the other.
    eager = _result("bf16-eager", [[0.0]], [[0]], [1])
    results = {"bf16-graphs": ref, "bf16-eager": eager, "fp8-graphs": run}
    assert gpu_quant._reference_for(run, results) is ref
    assert gpu_quant._reference_for(ref, results) is eager
    assert gpu_quant._reference_for(_result("fp8-eager", [], [], []), {"bf16-graphs": ref}) is ref
