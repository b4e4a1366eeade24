"""The `m1-mcp` command outside the server: init, doctor, bad settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

M1_MCP = str(Path(sys.executable).parent / "m1-mcp")


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([M1_MCP, *args], capture_output=True, text=True, timeout=300, env=env)


def test_init_prints_the_checkpoint_dir() -> None:
    done = _run("init")
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip())
    assert (path / "config.json").is_file()


def test_doctor_reports_versions_and_the_plugin() -> None:
    done = _run("doctor")
    assert done.returncode == 0, done.stderr
    assert "minimax_m1" in done.stdout and "mcp: 2." in done.stdout
    # The installed vLLM is one the plugin supports, and doctor says which range that is.
    assert "vllm_supported: yes: this plugin supports vLLM >=0.26,<0.35" in done.stdout


def test_bad_settings_exit_2_with_the_reason(tmp_path: Path) -> None:
    done = _run("serve", "--port", "99999")
    assert done.returncode == 2 and "port" in done.stderr
    cfg = tmp_path / "c.toml"
    cfg.write_text("no_such_setting = 1\n")
    done = _run("serve", "--config", str(cfg))
    assert done.returncode == 2 and "unknown settings no_such_setting" in done.stderr


def test_parallel_and_quantization_flags_reach_the_settings() -> None:
    done = _run("doctor", "--quantization", "experts_int8", "--distributed-executor-backend", "ray")
    assert done.returncode == 0, done.stderr
    assert "'quantization': 'experts_int8'" in done.stdout
    assert "'distributed_executor_backend': 'ray'" in done.stdout
    done = _run("serve", "--quantization", "int4")
    assert done.returncode == 2 and "quantization" in done.stderr
    help_text = _run("serve", "--help").stdout
    assert "--quantization" in help_text and "--distributed-executor-backend" in help_text
