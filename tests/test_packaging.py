"""A wheel of the project carries everything a non-editable install (pip, pipx, uvx) needs:
the presets' configs and tokenizers as the package data `m1_mcp_presets`, found from there."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_carries_the_presets_and_finds_them(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    wheel = next(tmp_path.glob("m1_mcp-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        assert f"m1_mcp_presets/tiny-m1/{name}" in names
    # Our folders install under names no other distribution uses.
    assert "m1_runtime/engine/smol_m1.py" in names and "m1_runtime/model/plugin.py" in names
    assert "m1_kernels/lightning/reference.py" in names
    assert "m1_kernels/lightning/tuned/configs.json" in names
    assert not any(n.startswith(("runtime/", "kernels/")) for n in names)
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    # The unpacked wheel first on the path, run from elsewhere: no checkout beside the code.
    probe = (
        "import m1_runtime.engine.checkpoints as c; "
        "print(c.__file__); print(c.preset_dir('tiny-m1'))"
    )
    env = {**os.environ, "PYTHONPATH": str(unpacked)}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, check=True,
        capture_output=True, text=True,
    ).stdout.split("\n")  # fmt: skip
    assert out[0].startswith(str(unpacked)), out
    assert Path(out[1]) == unpacked / "m1_mcp_presets" / "tiny-m1"
