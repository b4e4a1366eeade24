"""One settings object for the whole server.

Precedence, highest first: command-line flags > environment (`M1_MCP_<FIELD>`) > a TOML file
(`--config path`) > the defaults below. This is the only module that reads `M1_MCP_*` variables.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ENV_PREFIX = "M1_MCP_"

Transport = Literal["stdio", "sse", "streamable-http"]


class SettingsError(ValueError):
    """A setting has a bad value; the message names the setting and its source."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # model and engine
    model: str = Field(
        "smol-m1",
        description="Model preset or checkpoint dir: 'smol-m1' (default; SmolLM2-135M-Instruct "
        "in M1's layout, all-softmax, real answers), 'smol-m1-hybrid' (the same model linearized "
        "into M1's hybrid layout by a committed delta), 'tiny-m1' (M1's 7:1 hybrid, random "
        "weights)",
    )
    cache_dir: Path | None = Field(
        None, description="Where built checkpoints are cached (default: ~/.cache/m1-mcp)"
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights/activations dtype; 'auto' is float32 on CPU, bfloat16 on GPU"
    )
    max_model_len: int | None = Field(
        32768, ge=256, le=10_240_000, description="Context length (prompt + output) in tokens"
    )
    tensor_parallel_size: int = Field(1, ge=1, le=64, description="Tensor-parallel ranks")
    pipeline_parallel_size: int = Field(
        1,
        ge=1,
        le=64,
        description="Pipeline stages (each needs a softmax layer; "
        "VLLM_PP_LAYER_PARTITION picks the split)",
    )
    distributed_executor_backend: Literal["mp", "ray"] | None = Field(
        None,
        description="How vLLM runs its ranks: 'mp' (processes on this machine) or 'ray' (a Ray "
        "cluster, which can span several machines: run `ray start` on each first; needs Ray "
        "installed and a GPU platform, vLLM's CPU build has no Ray support); unset: 'mp' when "
        "tensor_parallel_size x pipeline_parallel_size > 1",
    )
    quantization: Literal["fp8", "experts_int8"] | None = Field(
        None,
        description="Quantize the bf16 weights as they load (GPUs): 'fp8' (linear layers and "
        "experts) or 'experts_int8' (MoE experts only); the router, embedding, LM head and norms "
        "stay unquantized; unset: none",
    )
    memory_fraction: float = Field(
        0.3, gt=0.0, le=0.98, description="Fraction of device memory (CPU memory on CPU) vLLM takes"
    )
    kv_cache_gib: float | None = Field(
        None, gt=0, le=4096, description="KV cache size in GiB on CPU (overrides memory_fraction)"
    )
    enforce_eager: bool | None = Field(
        None,
        description="Skip torch.compile and CUDA graphs; unset: eager on CPU (starts in ~20 s "
        "instead of ~35 s), compiled on GPUs (faster decode)",
    )
    prefix_caching: bool = Field(
        True,
        description="Reuse the cached blocks and lightning states of a prompt prefix seen "
        "before (a long document's shared instructions, earlier chat turns)",
    )

    # admission control
    max_concurrent: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="Generations running at once; unset: what the engine batches, read from vLLM "
        "at start-up (its max_num_seqs, 128 by default, bounded by how many full-context "
        "requests its KV cache holds)",
    )
    max_queue: int = Field(32, ge=0, le=10_000, description="Calls waiting for a slot")
    # background jobs (start_job / job_result / cancel_job)
    max_jobs: int = Field(64, ge=1, le=1024, description="Background jobs kept, running or done")
    job_ttl_s: int = Field(
        3600, ge=60, le=86_400, description="How long a finished job's result is kept (s)"
    )
    startup_timeout_s: float = Field(
        600.0, gt=0, description="How long a tool call waits for the model to finish loading"
    )

    # generation limits
    default_max_tokens: int = Field(1024, ge=1, le=1_000_000, description="Default output budget")
    max_max_tokens: int = Field(
        8192, ge=1, le=1_000_000, description="Largest output budget a caller may ask for"
    )
    max_input_chars: int = Field(
        400_000, ge=1_000, description="Largest code/document/problem text accepted, in characters"
    )

    # documents
    doc_chunk_tokens: int | None = Field(
        None,
        ge=64,
        description="Most tokens per chunk of a long document (unset: as many as the context "
        "holds next to the prompt and the answer)",
    )
    doc_chunk_overlap: int = Field(128, ge=0, description="Tokens shared by neighbouring chunks")
    doc_max_chunks: int = Field(64, ge=1, le=4096, description="Most chunks one document may use")
    doc_parallel_chunks: int = Field(
        8,
        ge=1,
        le=64,
        description="Chunks of one document analysed at once (admission still applies)",
    )

    # files
    file_roots: list[Path] = Field(
        default_factory=list,
        description="Directories path inputs may be read from (empty: none)",
    )
    max_file_bytes: int = Field(1_000_000, ge=1, description="Largest file a path input may name")

    # transport
    transport: Transport = "stdio"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    auth_token: str | None = Field(
        None, description="Bearer token HTTP clients must send (SSE and Streamable HTTP)"
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Extra Host header values accepted by DNS-rebinding protection",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    @field_validator("file_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        # Env vars and flags give roots as one os.pathsep-separated string.
        if isinstance(value, str):
            return [p for p in value.split(os.pathsep) if p]
        return value

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [h.strip() for h in value.split(",") if h.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("auth_token", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("distributed_executor_backend", "quantization", mode="before")
    @classmethod
    def _none_word(cls, value: Any) -> Any:
        # A flag or env var cannot carry None: '' or 'none' unsets a value a TOML file set.
        if isinstance(value, str) and value.strip().lower() in ("", "none"):
            return None
        return value

    def check(self) -> Settings:
        """Cross-field rules that pydantic field validators cannot express alone."""
        if self.default_max_tokens > self.max_max_tokens:
            raise SettingsError("default_max_tokens must not exceed max_max_tokens")
        chunk = self.doc_chunk_tokens
        if chunk is not None and self.doc_chunk_overlap * 2 >= chunk:
            raise SettingsError("doc_chunk_overlap must be less than half of doc_chunk_tokens")
        if chunk is not None and self.max_model_len is not None and chunk >= self.max_model_len:
            raise SettingsError("doc_chunk_tokens must be smaller than max_model_len")
        return self


FIELDS = tuple(Settings.model_fields)


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in FIELDS:
        key = ENV_PREFIX + name.upper()
        if key in environ:
            values[name] = environ[key]
    return values


def _from_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}") from exc
    # Accept both a flat file and one with a [server] table.
    table = data.get("server", data) if isinstance(data.get("server"), dict) else data
    unknown = sorted(set(table) - set(FIELDS))
    if unknown:
        raise SettingsError(f"config file {path}: unknown settings {', '.join(unknown)}")
    return dict(table)


def load_settings(
    flags: Mapping[str, Any] | None = None,
    config_path: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge the sources (flags > env > TOML > defaults) and validate once."""
    environ = os.environ if environ is None else environ
    if config_path is None and environ.get(ENV_PREFIX + "CONFIG"):
        config_path = Path(environ[ENV_PREFIX + "CONFIG"])
    merged: dict[str, Any] = {}
    if config_path is not None:
        merged.update(_from_toml(config_path))
    merged.update(_from_env(environ))
    merged.update({k: v for k, v in (flags or {}).items() if v is not None})
    try:
        return Settings(**merged).check()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from exc
