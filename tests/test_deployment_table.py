"""The deployment table's arithmetic (scripts/deployment_table.py) against known figures."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from m1_runtime.model.config import architecture_of
from scripts import deployment_table as dt

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "models" / "minimax-m1-80k.json"
ARCH = architecture_of(SimpleNamespace(**json.loads(CONFIG.read_text())))
ONE_GPU = dt.Deployment("one", "H200", 1, 1, 1, 1, None)


def test_one_gpu_holds_the_published_456b_parameters() -> None:
    everything = range(ARCH.num_layers)
    params = dt.weight_bytes(ARCH, everything, True, True, ONE_GPU) / dt.BF16
    assert abs(params / 456e9 - 1) < 0.005, params


def test_shards_and_stages_add_up_to_the_whole() -> None:
    whole = dt.weight_bytes(ARCH, range(ARCH.num_layers), True, True, ONE_GPU)
    tp8 = dt.Deployment("tp8", "H200", 1, 8, 8, 1, None)
    per_gpu = dt.weight_bytes(ARCH, range(ARCH.num_layers), True, True, tp8)
    # Only the router and the norms are replicated: well under 0.1% of the model.
    assert 1 <= per_gpu * 8 / whole < 1.001
    stages = dt.stage_layers(ARCH.num_layers, 2)
    assert [len(s) for s in stages] == [40, 40]
    halves = [dt.weight_bytes(ARCH, s, i == 0, i == 1, ONE_GPU) for i, s in enumerate(stages)]
    assert abs(sum(halves) - whole) < 1


def test_a_128k_sequence_costs_what_the_config_says() -> None:
    kv, state = dt.sequence_bytes(ARCH, range(ARCH.num_layers), 1, 131072)
    assert kv == 10 * 2 * 8 * 128 * 2 * 131072  # 10 softmax layers, K and V, 8 heads, bf16
    assert state == 70 * 64 * 128 * 128 * 4  # 70 lightning layers, float32 [H, D, D]


def test_quantized_rows_hold_about_half_the_bf16_weights() -> None:
    table = {r["quantization"]: r for r in dt.rows(ARCH, 131072, 0.9, 5.0) if r["pp"] == 1}
    bf16 = table[None]["weights_gib"]
    assert 0.49 < table["fp8"]["weights_gib"] / bf16 < 0.52
    assert table["fp8"]["weights_gib"] < table["experts_int8"]["weights_gib"] < 0.54 * bf16
    assert not any(r["run"] for r in table.values())
