"""Launch configurations as data (m1_kernels.lightning.configs): lookup by device with a
fallback, selection by shape, the JSON round trip and its strictness, and a tuner that writes
the file without touching any module's globals."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from m1_kernels.lightning import configs
from m1_kernels.lightning.configs import (
    ConfigTable,
    DecodeConfig,
    DeviceConfigs,
    GluonConfig,
    PrefillConfig,
)

F32 = PrefillConfig(
    block_rows=32, v_slice=32, num_warps=8, num_stages=1, state_update_first=False, tma=False
)
HALF = PrefillConfig(
    block_rows=64, v_slice=64, num_warps=4, num_stages=4, state_update_first=True, tma=True
)
GLUON = GluonConfig(
    min_tokens=8192, v_slice=64, stages=3, handovers=2, intra_registers=232, max_registers=168,
    hand_over_early=False,
)  # fmt: skip
FEW = DecodeConfig(v_slice=32, num_warps=4, state_store=".cs", heads_first=True)
MANY = DecodeConfig(v_slice=128, num_warps=4, state_store="", heads_first=True)


def entry(source: str, **changes) -> DeviceConfigs:
    base = DeviceConfigs(
        source=source,
        prefill={"float32": F32, "bfloat16": dataclasses.replace(HALF, gluon=GLUON)},
        many_sequences=dataclasses.replace(HALF, v_slice=128, state_transposed=True),
        many_sequences_min_waves=4,
        many_sequences_max_mean_tokens=4096,
        decode_few_rows=FEW,
        decode_many_rows=MANY,
        decode_many_rows_from=64,
    )
    return dataclasses.replace(base, **changes)


TABLE = ConfigTable(
    {"NVIDIA H200": entry("h200"), "NVIDIA H100": entry("h100", decode_many_rows_from=32)},
    fallback="NVIDIA H200",
)


def test_lookup_by_exact_name_family_and_fallback() -> None:
    assert TABLE.for_device("NVIDIA H100").source == "h100"
    assert TABLE.for_device("NVIDIA H100 80GB HBM3").source == "h100"  # the family's entry
    assert TABLE.for_device("NVIDIA H1000").source == "h200"  # not a family member: fallback
    assert TABLE.for_device("NVIDIA A100-SXM4-80GB").source == "h200"
    assert TABLE.for_device("cpu").source == "h200"


def test_fallback_must_be_an_entry() -> None:
    with pytest.raises(ValueError, match="fallback"):
        ConfigTable({"NVIDIA H200": entry("h200")}, fallback="NVIDIA B200")


def test_prefill_selection_by_dtype_and_shape() -> None:
    tuned = entry("h200")
    many = tuned.many_sequences
    assert tuned.prefill_for(torch.float32, 4096, 1, 64, 132) == F32
    assert tuned.prefill_for(torch.float64, 4096, 1, 64, 132) == F32  # unknown dtype: float32's
    assert tuned.prefill_for(torch.bfloat16, 16384, 1, 64, 132).gluon == GLUON
    # 16 sequences x 64 heads = 1024 programs >= 4 waves of 132 SMs; mean 2K tokens <= 4K
    assert tuned.prefill_for(torch.bfloat16, 16 * 2048, 16, 64, 132) == many
    assert tuned.prefill_for(torch.float16, 16 * 2048, 16, 64, 132) == many
    assert tuned.prefill_for(torch.bfloat16, 16 * 4097, 16, 64, 132) != many  # long mean
    assert tuned.prefill_for(torch.bfloat16, 8 * 2048, 8, 64, 132) != many  # under 4 waves
    assert tuned.prefill_for(torch.float32, 16 * 2048, 16, 64, 132) == F32  # 16-bit only
    assert tuned.prefill_for(torch.bfloat16, 16 * 2048, 16, 64, None) != many  # no GPU


def test_decode_selection_by_rows() -> None:
    tuned = entry("h200")
    assert tuned.decode_for(1) == FEW
    assert tuned.decode_for(63) == FEW
    assert tuned.decode_for(64) == MANY


def test_json_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "configs.json"
    configs.save_table(TABLE, path)
    assert configs.load_table(path) == TABLE
    text = path.read_text()
    configs.save_table(configs.load_table(path), path)
    assert path.read_text() == text  # stable: re-saving changes nothing


def test_installed_table_loads_and_keeps_the_float32_contract() -> None:
    table = configs.load_table()
    assert table.fallback in table.devices
    for name, tuned in table.devices.items():
        # float32 inputs promise IEEE dots (exact to ~1e-6); only 16-bit inputs take Gluon
        assert tuned.prefill["float32"].dot_precision == "ieee", name
        assert tuned.prefill["float32"].gluon is None, name
        assert tuned.prefill.get("float16", F32).gluon is None, name
    assert configs.device_configs(torch.device("cpu")) == table.for_device("cpu")


def _data() -> dict:
    return configs.table_to_json(TABLE)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["devices"]["NVIDIA H200"]["decode_few_rows"].update(BV=32), "unknown keys"),
        (lambda d: d["devices"]["NVIDIA H200"]["decode_few_rows"].pop("num_warps"), "num_warps"),
        (lambda d: d["devices"]["NVIDIA H200"]["prefill"]["float32"].update(tma=1), "tma"),
        (lambda d: d["devices"]["NVIDIA H200"]["prefill"]["float32"].update(num_warps=8.0), "int"),
        (lambda d: d["devices"]["NVIDIA H200"].update(decode_many_rows_from=True), "int"),
        (lambda d: d["devices"]["NVIDIA H200"]["prefill"].pop("float32"), "float32"),
        (lambda d: d["devices"]["NVIDIA H200"].update(extra=1), "unknown keys"),
        (
            lambda d: d["devices"]["NVIDIA H200"]["prefill"]["bfloat16"]["gluon"].update(NS=3),
            "unknown keys",
        ),
        (
            lambda d: d["devices"]["NVIDIA H200"]["prefill"]["float32"].update(
                dot_precision="tf32x4"
            ),
            "dot_precision",
        ),
        (lambda d: d["devices"]["NVIDIA H200"]["decode_few_rows"].update(state_store="cs"), "cs"),
        (lambda d: d.update(fallback="NVIDIA B200"), "fallback"),
    ],
)
def test_json_is_strict(tmp_path: Path, edit, message: str) -> None:
    data = _data()
    edit(data)
    path = tmp_path / "configs.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        configs.load_table(path)


def _globals_snapshot(modules) -> dict:
    return {m.__name__: dict(vars(m)) for m in modules}


def test_tuner_writes_the_file_and_never_module_globals(tmp_path: Path) -> None:
    from benchmarks import kernels as tuner
    from m1_kernels.lightning import triton_decode, triton_prefill

    path = tmp_path / "configs.json"
    configs.save_table(TABLE, path)
    watched = [configs, triton_prefill, triton_decode, tuner]
    before = _globals_snapshot(watched)
    installed_before = configs.installed_table()
    faster = dataclasses.replace(HALF, num_stages=3, gluon=dataclasses.replace(GLUON, stages=4))
    wide = dataclasses.replace(MANY, num_warps=8)
    winners = tuner.SweepWinners(prefill_16bit=faster, decode_many_rows=wide)

    new = tuner.install(winners, "NVIDIA H100 80GB HBM3", path)

    after = _globals_snapshot(watched)
    assert after.keys() == before.keys()
    for name, values in before.items():
        keys = values.keys() | after[name].keys()
        changed = [k for k in keys if after[name].get(k) is not values.get(k)]
        assert not changed, f"{name}: globals rebound: {changed}"
    assert configs.load_table(path) == new  # what it returned is what it wrote
    h100 = new.for_device("NVIDIA H100 80GB HBM3")
    assert h100.prefill["bfloat16"] == faster
    assert h100.prefill["float16"] == dataclasses.replace(faster, gluon=None)  # Hopper bf16 only
    assert h100.decode_many_rows == wide
    # everything the sweep did not time comes from the entry the device used before (H100's)
    assert h100.prefill["float32"] == F32 and h100.decode_few_rows == FEW
    assert h100.decode_many_rows_from == 32
    assert new.for_device("NVIDIA H100").source == "h100"  # the family entry stays
    assert new.for_device("NVIDIA H200") == TABLE.for_device("NVIDIA H200")
    # the package's own table was not written (the tuner wrote where it was told)
    assert configs.load_table() == installed_before


def test_kernel_modules_hold_no_tunables() -> None:
    """The kernels read their settings from the table only: no configuration left as a
    module global that a tuner could overwrite."""
    from m1_kernels.lightning import triton_decode, triton_prefill

    kinds = (PrefillConfig, DecodeConfig, GluonConfig, DeviceConfigs, ConfigTable)
    for module in (triton_prefill, triton_decode):
        for name, value in vars(module).items():
            assert not isinstance(value, kinds), f"{module.__name__}.{name}"
    old = ["CONFIGS", "MANY_SEQUENCES", "MANY_WAVES", "CONFIG_FEW", "CONFIG_MANY", "MANY_ROWS"]
    left = [n for n in old for m in (triton_prefill, triton_decode) if hasattr(m, n)]
    assert not left
