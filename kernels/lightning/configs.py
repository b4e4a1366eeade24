"""Launch configurations of the GPU lightning kernels, as data.

The numbers live in `tuned/configs.json` (package data), one entry per GPU model that was
measured, plus the name of the entry that serves every other device. The kernels ask
`device_configs(device)` for their entry and pick from it by input shape; the tuner
(`benchmarks/kernels.py --sweep --install`) rewrites the file with `save_table` and never
touches this module's or the kernels' globals. Why each value was chosen: docs/kernels.md.

Each configuration type holds only the knobs its kernel reads, with the names saying what they
are; the kernels' own constexpr names are given beside each field.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch

TABLE_PATH = Path(__file__).with_name("tuned") / "configs.json"

DOT_PRECISIONS = ("ieee", "tf32", "tf32x3")  # tl.dot input_precision for float32 inputs
STATE_STORES = ("", ".cs", ".cg", ".wb", ".wt")  # Triton store cache modifiers ("" = default)


@dataclass(frozen=True)
class GluonConfig:
    """The warp-specialised Gluon kernel (gluon_prefill.py) for the full blocks of long bf16
    prefills on Hopper; the Triton kernel then runs each sequence's partial last block."""

    min_tokens: int  # packed tokens from which the Gluon path is taken (below, host cost wins)
    v_slice: int  # BV: D_v columns per program
    stages: int  # NS: q, k, v blocks in flight (shared-memory ring)
    handovers: int  # NX: buffers handing X and o between the partitions
    intra_registers: int  # INTRA_REGS: registers per thread of the intra-block partition
    max_registers: int  # MAXNREG: registers per thread of the kernel as a whole
    hand_over_early: bool  # EARLY_X: hand X over before the state update has finished


@dataclass(frozen=True)
class PrefillConfig:
    """One launch of the Triton prefill kernel (triton_prefill.py)."""

    block_rows: int  # C: rows per block of the sequence walk
    v_slice: int  # BV: D_v columns per program
    num_warps: int
    num_stages: int
    state_update_first: bool  # EARLY: issue the state update before the intra-block products
    tma: bool  # TMA: full blocks through the tensor-memory accelerator (Hopper and later)
    state_transposed: bool = False  # STATE_T: 16-bit inputs hold S^T (`_block_t`)
    dot_precision: str = "ieee"  # PREC: float32 inputs only ("ieee" is the exact contract)
    gluon: GluonConfig | None = None  # full blocks in the Gluon kernel where it applies

    def __post_init__(self) -> None:
        if self.dot_precision not in DOT_PRECISIONS:
            raise ValueError(f"dot_precision {self.dot_precision!r} not in {DOT_PRECISIONS}")


@dataclass(frozen=True)
class DecodeConfig:
    """One launch of the Triton decode kernel (triton_decode.py)."""

    v_slice: int  # BV: D_v columns per program
    num_warps: int
    state_store: str  # STORE: cache modifier of the state write-back
    heads_first: bool  # HEADS_FIRST: neighbouring programs take neighbouring heads of one row

    def __post_init__(self) -> None:
        if self.state_store not in STATE_STORES:
            raise ValueError(f"state_store {self.state_store!r} not in {STATE_STORES}")


@dataclass(frozen=True)
class DeviceConfigs:
    """Everything measured on one GPU model, and the rules that pick among it by shape."""

    source: str  # where the numbers come from (machine, date, command)
    prefill: Mapping[str, PrefillConfig]  # by input dtype name: float32, bfloat16, float16
    # 16-bit inputs, many short sequences: taken when heads x sequences fill the GPU
    # many_sequences_min_waves times over and the mean sequence is at most
    # many_sequences_max_mean_tokens long (a long sequence among them would run on few SMs).
    many_sequences: PrefillConfig
    many_sequences_min_waves: int
    many_sequences_max_mean_tokens: int
    decode_few_rows: DecodeConfig
    decode_many_rows: DecodeConfig  # from decode_many_rows_from rows (sequences) on
    decode_many_rows_from: int

    def __post_init__(self) -> None:
        if "float32" not in self.prefill:
            raise ValueError("prefill needs a float32 entry (the one other dtypes fall back to)")
        object.__setattr__(self, "prefill", MappingProxyType(dict(self.prefill)))

    def prefill_for(
        self, dtype: torch.dtype, tokens: int, sequences: int, heads: int, sm_count: int | None
    ) -> PrefillConfig:
        """The configuration for a packed prefill; sm_count None (no GPU) never picks the
        many-sequence configuration."""
        if (
            sm_count is not None
            and dtype in (torch.bfloat16, torch.float16)
            and sequences * heads >= self.many_sequences_min_waves * sm_count
            and tokens <= self.many_sequences_max_mean_tokens * sequences
        ):
            return self.many_sequences
        return self.prefill.get(dtype_name(dtype), self.prefill["float32"])

    def decode_for(self, rows: int) -> DecodeConfig:
        if rows >= self.decode_many_rows_from:
            return self.decode_many_rows
        return self.decode_few_rows


@dataclass(frozen=True)
class ConfigTable:
    """Configurations by GPU model name (as `torch.cuda.get_device_name` reports it)."""

    devices: Mapping[str, DeviceConfigs]
    fallback: str  # the entry used for devices not in the table (and under the interpreter)

    def __post_init__(self) -> None:
        if self.fallback not in self.devices:
            raise ValueError(f"fallback {self.fallback!r} is not one of {sorted(self.devices)}")
        object.__setattr__(self, "devices", MappingProxyType(dict(self.devices)))

    def for_device(self, name: str) -> DeviceConfigs:
        """The exact name's entry, else the longest entry that names this device's family
        ("NVIDIA H100" for "NVIDIA H100 80GB HBM3"), else the fallback."""
        if name in self.devices:
            return self.devices[name]
        family = [key for key in self.devices if name.startswith(key + " ")]
        return self.devices[max(family, key=len) if family else self.fallback]

    def with_device(self, name: str, configs: DeviceConfigs) -> ConfigTable:
        """A new table with name's entry added or replaced (what the tuner writes)."""
        return ConfigTable({**self.devices, name: configs}, self.fallback)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


# ----------------------------------------------------------------------------- JSON


def _build(cls: type, data: Any, where: str) -> Any:
    """cls from a JSON object whose keys are exactly cls's fields (defaults may be left out),
    each of the field's type: a typo or a stray knob in the data fails here, by name."""
    data = _object(data, where)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown} (known: {sorted(fields)})")
    values = {}
    for name, value in data.items():
        if name == "gluon":
            values[name] = None if value is None else _build(GluonConfig, value, f"{where}.gluon")
            continue
        kind = str(fields[name].type)  # a string already: annotations are postponed here
        expected = {"int": int, "bool": bool, "str": str}[kind]
        if type(value) is not expected:
            raise ValueError(f"{where}.{name}: expected {kind}, got {value!r}")
        values[name] = value
    try:
        return cls(**values)
    except TypeError as exc:  # a required field is missing
        raise ValueError(f"{where}: {exc}") from None


def _object(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _typed(data: dict, key: str, kind: type, where: str) -> Any:
    value = data[key]
    if type(value) is not kind:
        raise ValueError(f"{where}.{key}: expected {kind.__name__}, got {value!r}")
    return value


def _device_from_json(data: Any, where: str) -> DeviceConfigs:
    data = _object(data, where)
    fields = {f.name for f in dataclasses.fields(DeviceConfigs)}
    if set(data) != fields:
        raise ValueError(
            f"{where}: unknown keys {sorted(set(data) - fields)}, "
            f"missing keys {sorted(fields - set(data))}"
        )
    prefill = _object(data["prefill"], f"{where}.prefill")
    return DeviceConfigs(
        source=_typed(data, "source", str, where),
        prefill={k: _build(PrefillConfig, c, f"{where}.prefill.{k}") for k, c in prefill.items()},
        many_sequences=_build(PrefillConfig, data["many_sequences"], f"{where}.many_sequences"),
        many_sequences_min_waves=_typed(data, "many_sequences_min_waves", int, where),
        many_sequences_max_mean_tokens=_typed(data, "many_sequences_max_mean_tokens", int, where),
        decode_few_rows=_build(DecodeConfig, data["decode_few_rows"], f"{where}.decode_few_rows"),
        decode_many_rows=_build(
            DecodeConfig, data["decode_many_rows"], f"{where}.decode_many_rows"
        ),
        decode_many_rows_from=_typed(data, "decode_many_rows_from", int, where),
    )


def table_from_json(data: Any) -> ConfigTable:
    top = _object(data, "configs")
    if set(top) != {"fallback", "devices"}:
        raise ValueError(f"configs: expected keys fallback and devices, got {sorted(top)}")
    devices = {
        name: _device_from_json(entry, f"devices[{name!r}]")
        for name, entry in _object(top["devices"], "devices").items()
    }
    if not isinstance(top["fallback"], str):
        raise ValueError("configs.fallback: expected a device name")
    return ConfigTable(devices, top["fallback"])


def plain(obj: Any) -> Any:
    """Dataclasses and mappings as JSON-ready dicts (dataclasses.asdict cannot copy the
    read-only mapping views held here)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {k: plain(v) for k, v in obj.items()}
    return obj


def table_to_json(table: ConfigTable) -> dict:
    return {"fallback": table.fallback, "devices": plain(table.devices)}


def load_table(path: Path = TABLE_PATH) -> ConfigTable:
    return table_from_json(json.loads(path.read_text(encoding="utf-8")))


def save_table(table: ConfigTable, path: Path = TABLE_PATH) -> None:
    """Write table as JSON (sorted devices, 2-space indent: stable diffs when re-tuned)."""
    data = table_to_json(table)
    data["devices"] = dict(sorted(data["devices"].items()))
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------- lookup


@functools.cache
def installed_table() -> ConfigTable:
    """The table shipped with the package, read once per process."""
    return load_table(TABLE_PATH)


def device_name(device: torch.device) -> str:
    """The GPU model's name; "cpu" for CPU tensors (the interpreter), which get the fallback."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


@functools.cache
def device_configs(device: torch.device) -> DeviceConfigs:
    """The installed configurations for the device of a tensor (asked once per device)."""
    return installed_table().for_device(device_name(device))


def reload_installed() -> None:
    """Forget what was read, so the next launch reads `TABLE_PATH` again: the tuner calls this
    after writing the file, to time what it installed in the same process."""
    installed_table.cache_clear()
    device_configs.cache_clear()
