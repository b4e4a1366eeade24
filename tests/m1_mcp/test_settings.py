"""Settings precedence (flags > env > TOML > defaults) and validation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from m1_mcp.cli import build_parser
from m1_mcp.settings import Settings, SettingsError, load_settings


def test_defaults_are_safe() -> None:
    s = load_settings(environ={})
    assert s == Settings()
    assert s.transport == "stdio" and s.host == "127.0.0.1"
    assert s.file_roots == [] and s.auth_token is None


def test_precedence_flags_over_env_over_toml(tmp_path: Path) -> None:
    cfg = tmp_path / "server.toml"
    cfg.write_text('port = 1111\nmax_concurrent = 3\nhost = "0.0.0.0"\nlog_level = "debug"\n')
    env = {"M1_MCP_PORT": "2222", "M1_MCP_MAX_CONCURRENT": "5"}
    s = load_settings(flags={"port": 3333}, config_path=cfg, environ=env)
    assert s.port == 3333  # flag wins
    assert s.max_concurrent == 5  # env beats file
    assert s.host == "0.0.0.0"  # file beats default
    assert s.log_level == "DEBUG"
    assert s.max_queue == Settings().max_queue  # default


def test_config_from_env_and_server_table(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[server]\ntransport = "sse"\nfile_roots = ["/tmp"]\n')
    s = load_settings(environ={"M1_MCP_CONFIG": str(cfg)})
    assert s.transport == "sse" and s.file_roots == [Path("/tmp")]


def test_env_lists_and_empty_token() -> None:
    s = load_settings(
        environ={"M1_MCP_FILE_ROOTS": "/a:/b", "M1_MCP_AUTH_TOKEN": "", "M1_MCP_ENFORCE_EAGER": "0"}
    )
    assert s.file_roots == [Path("/a"), Path("/b")]
    assert s.auth_token is None and s.enforce_eager is False


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"M1_MCP_TRANSPORT": "carrier-pigeon"}, "transport"),
        ({"M1_MCP_PORT": "70000"}, "port"),
        ({"M1_MCP_MAX_CONCURRENT": "0"}, "max_concurrent"),
        ({"M1_MCP_DEFAULT_MAX_TOKENS": "9000", "M1_MCP_MAX_MAX_TOKENS": "100"}, "default_max"),
        ({"M1_MCP_DOC_CHUNK_TOKENS": "2048", "M1_MCP_DOC_CHUNK_OVERLAP": "2000"}, "overlap"),
    ],
)
def test_bad_values_are_named(env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError, match=needle):
        load_settings(environ=env)


def test_unknown_toml_key_and_bad_toml(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("prot = 1\n")
    with pytest.raises(SettingsError, match="unknown settings prot"):
        load_settings(config_path=cfg, environ={})
    cfg.write_text("port = \n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(config_path=cfg, environ={})


def test_every_setting_has_a_serve_flag() -> None:
    parser = build_parser()
    args = parser.parse_args(["serve", "--port", "9", "--file-root", "/x", "--file-root", "/y"])
    assert args.port == "9" and args.file_roots == ["/x", "/y"]
    serve_help = subprocess.run(
        [sys.executable, "-m", "m1_mcp.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in Settings.model_fields:
        assert f"M1_MCP_{name.upper()}" in serve_help, name
    assert "--config" in serve_help and "--transport" in serve_help


def test_max_concurrent_defaults_to_the_engine() -> None:
    """Unset, the admission limit is what vLLM batches (its max_num_seqs) bounded by the
    full-context requests its KV cache holds; a configured number is taken as it is."""
    from m1_runtime.engine.admission import batch_limit

    assert Settings().max_concurrent is None
    assert load_settings(environ={"M1_MCP_MAX_CONCURRENT": "16"}).max_concurrent == 16
    assert batch_limit(None, 128, 4096.0) == 128
    assert batch_limit(None, 128, 37.9) == 37  # only whole full-context requests fit
    assert batch_limit(None, 128, 0.4) == 1
    assert batch_limit(None, 256, None) == 256  # no KV figure: the scheduler's bound alone
    assert batch_limit(8, 128, 37.9) == 8


def test_example_config_loads() -> None:
    example = Path(__file__).resolve().parents[2] / "configs" / "server.example.toml"
    s = load_settings(config_path=example, environ={})
    assert s.transport == "stdio"


def test_engine_config_is_the_settings_engine_part() -> None:
    """One source for engine settings: every EngineConfig field is a Settings field with the
    same default (the model's None in EngineConfig means the default preset)."""
    import dataclasses

    from m1_mcp.server import engine_config
    from m1_runtime.engine import EngineConfig
    from m1_runtime.engine.checkpoints import DEFAULT_MODEL

    defaults = Settings()
    for f in dataclasses.fields(EngineConfig):
        expected = getattr(defaults, f.name)
        default = DEFAULT_MODEL if f.name == "model" and f.default is None else f.default
        assert default == expected, (f.name, default, expected)
    assert engine_config(defaults) == EngineConfig(model=DEFAULT_MODEL)


def test_quantization_and_executor_backend(tmp_path: Path) -> None:
    """Both come from a TOML file, the environment or a flag, reach the engine's config, and
    take only the values vLLM is driven with here; '' or 'none' unsets a file's value."""
    from m1_mcp.server import engine_config

    assert Settings().quantization is None and Settings().distributed_executor_backend is None
    cfg = tmp_path / "c.toml"
    cfg.write_text('quantization = "fp8"\ndistributed_executor_backend = "ray"\n')
    s = load_settings(config_path=cfg, environ={})
    assert (s.quantization, s.distributed_executor_backend) == ("fp8", "ray")
    engine = engine_config(s)
    assert (engine.quantization, engine.distributed_executor_backend) == ("fp8", "ray")
    env = {"M1_MCP_QUANTIZATION": "experts_int8", "M1_MCP_DISTRIBUTED_EXECUTOR_BACKEND": "none"}
    s = load_settings(config_path=cfg, environ=env)
    assert (s.quantization, s.distributed_executor_backend) == ("experts_int8", None)
    s = load_settings(flags={"quantization": ""}, config_path=cfg, environ={})
    assert s.quantization is None
    for name, bad in (("quantization", "int4"), ("distributed_executor_backend", "slurm")):
        with pytest.raises(SettingsError, match=name):
            load_settings(flags={name: bad}, environ={})
