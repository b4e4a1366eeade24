"""Built-in models: build them into a cache on first use, and resolve ``--model``.

Three kinds of preset: ``tiny-m1`` (and its variants) is a seeded random hybrid M1 checkpoint
built from ``configs/models/``; ``smol-m1``, the default, is SmolLM2-135M-Instruct converted into
M1's layout, all softmax (``runtime/engine/smol_m1.py``); ``smol-m1-hybrid`` is that model with
most layers turned into lightning layers by the committed delta
(``runtime/engine/smol_m1_hybrid.py``). All go through the same cache, lock and atomic swap.

A built checkpoint uses MiniMax-M1's own layout (``model.layers.{i}.self_attn.qkv_proj`` and so
on, sharded safetensors with a ``model.safetensors.index.json``), so the same loader code serves
the tiny random model and the released weights.

Cache layout (``cache_dir`` defaults to ``$XDG_CACHE_HOME/m1-mcp/models`` or
``~/.cache/m1-mcp/models``)::

    <cache_dir>/<name>-<key>/           one finished checkpoint (renamed into place when complete)
        config.json
        model-0000k-of-0000n.safetensors
        model.safetensors.index.json
        tokenizer.json, tokenizer_config.json, special_tokens_map.json, generation_config.json
        .complete                       JSON: format version, key, seed, builder pid
    <cache_dir>/.<name>-<key>.lock      fcntl lock held while one process builds
    <cache_dir>/.<name>-<key>.tmp-*     a build in progress (or a crashed one, removed next time)

``key`` hashes the config, the seed, the tokenizer files and FORMAT_VERSION, so changing any of
them builds a fresh directory instead of reusing a stale one.

Nothing here writes to stdout: stdout carries the MCP stdio protocol. Progress goes to stderr.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import re
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

# Bump when the tensor layout, init or file set changes: old cache entries then stop matching.
FORMAT_VERSION = 1

# Random-weight presets: name -> directory under configs/models/ holding config.json and the
# tokenizer files.
PRESETS: dict[str, str] = {"tiny-m1": "tiny-m1"}
# The random hybrid that tests, benchmarks and variants start from.
DEFAULT_PRESET = "tiny-m1"
# The converted real model, and what `m1-mcp serve` answers with when no --model is given.
SMOL_PRESET = "smol-m1"
DEFAULT_MODEL = SMOL_PRESET
# smol-m1 linearized into M1's hybrid layout: the same GGUF plus the delta committed under
# configs/models/smol-m1-hybrid/ (scripts/linearize trains it; runtime/engine/smol_m1_hybrid.py
# applies it).
SMOL_HYBRID_PRESET = "smol-m1-hybrid"

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
)
INDEX_FILE = "model.safetensors.index.json"
COMPLETE_MARKER = ".complete"

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# ---------------------------------------------------------------------------------------------
# Presets and paths


def configs_dir() -> Path:
    """The presets' folder: ``configs/models`` of this checkout, which installs as the package
    data ``m1_mcp_presets`` (so a wheel install has it too)."""
    checkout = Path(__file__).resolve().parent.parent / "configs" / "models"
    if checkout.is_dir():
        return checkout
    import importlib

    try:
        # A folder of data files without __init__.py: a namespace package, whose __path__
        # names the installed folder.
        installed = Path(next(iter(importlib.import_module("m1_mcp_presets").__path__)))
    except (ModuleNotFoundError, StopIteration):
        installed = None
    if installed is None or not installed.is_dir():
        raise FileNotFoundError(
            "cannot find the model presets: neither configs/models/ beside the source nor the "
            "installed m1_mcp_presets package data exists; reinstall m1-mcp"
        )
    return installed


def preset_dir(name: str) -> Path:
    """Directory holding the preset's config.json and tokenizer files."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(sorted(PRESETS))}")
    path = configs_dir() / PRESETS[name]
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"preset {name!r} has no config.json at {path}")
    return path


def preset_config(name: str) -> dict[str, Any]:
    """A fresh copy of the preset's config dict."""
    return json.loads((preset_dir(name) / "config.json").read_text(encoding="utf-8"))


def default_cache_dir(base: Path | None = None) -> Path:
    """Where built checkpoints live: ``base`` if given, else the XDG cache dir."""
    if base is not None:
        return Path(base).expanduser()
    # XDG_CACHE_HOME is the one env var read here: it is the platform's convention, not a setting.
    xdg = os.environ.get("XDG_CACHE_HOME")
    root = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return root / "m1-mcp" / "models"


# ---------------------------------------------------------------------------------------------
# Tensor layout


def _head_dim(config: dict[str, Any]) -> int:
    return int(config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"])


def _attn_types(config: dict[str, Any]) -> list[int]:
    layers = int(config["num_hidden_layers"])
    types = list(config.get("attn_type_list") or [])
    if len(types) != layers or any(t not in (0, 1) for t in types):
        raise ValueError(
            f"attn_type_list must hold {layers} entries of 0 (lightning) or 1 (softmax), "
            f"got {types}"
        )
    return types


def expected_tensors(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Every tensor name of an M1 checkpoint with its shape, in file order."""
    hidden, vocab = int(config["hidden_size"]), int(config["vocab_size"])
    heads, kv_heads = int(config["num_attention_heads"]), int(config["num_key_value_heads"])
    d, inter = _head_dim(config), int(config["intermediate_size"])
    experts = int(config["num_local_experts"])
    if int(config.get("shared_intermediate_size") or 0):
        raise ValueError("shared experts (shared_intermediate_size > 0) are not supported")

    specs: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (vocab, hidden)}
    for i, kind in enumerate(_attn_types(config)):
        p = f"model.layers.{i}"
        specs[f"{p}.input_layernorm.weight"] = (hidden,)
        if kind == 0:
            specs[f"{p}.self_attn.qkv_proj.weight"] = (3 * heads * d, hidden)
            specs[f"{p}.self_attn.output_gate.weight"] = (heads * d, hidden)
            specs[f"{p}.self_attn.out_proj.weight"] = (hidden, heads * d)
            specs[f"{p}.self_attn.norm.weight"] = (heads * d,)
        else:
            specs[f"{p}.self_attn.q_proj.weight"] = (heads * d, hidden)
            specs[f"{p}.self_attn.k_proj.weight"] = (kv_heads * d, hidden)
            specs[f"{p}.self_attn.v_proj.weight"] = (kv_heads * d, hidden)
            specs[f"{p}.self_attn.o_proj.weight"] = (hidden, heads * d)
        specs[f"{p}.post_attention_layernorm.weight"] = (hidden,)
        specs[f"{p}.block_sparse_moe.gate.weight"] = (experts, hidden)
        for e in range(experts):
            q = f"{p}.block_sparse_moe.experts.{e}"
            specs[f"{q}.w1.weight"] = (inter, hidden)
            specs[f"{q}.w3.weight"] = (inter, hidden)
            specs[f"{q}.w2.weight"] = (hidden, inter)
    specs["model.norm.weight"] = (hidden,)
    if not config.get("tie_word_embeddings", False):
        specs["lm_head.weight"] = (vocab, hidden)
    return specs


def _dtype(config: dict[str, Any]) -> torch.dtype:
    name = str(config.get("torch_dtype") or "float32").removeprefix("torch.")
    if name not in _DTYPES:
        raise ValueError(f"torch_dtype {name!r} is not one of {', '.join(_DTYPES)}")
    return _DTYPES[name]


def _tensor_seed(seed: int, name: str) -> int:
    # A stable hash (not Python's salted hash()) so each tensor's values depend only on the
    # seed and its name, never on build order or sharding.
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def init_tensor(name: str, shape: tuple[int, ...], seed: int, std: float) -> torch.Tensor:
    """Seeded float32 init: normal(0, std) for matrices, 1 + 0.1·normal for norm weights."""
    gen = torch.Generator().manual_seed(_tensor_seed(seed, name))
    noise = torch.randn(shape, generator=gen, dtype=torch.float32)
    if len(shape) == 1:
        # Not exactly one, so a loader that drops or misroutes a norm weight changes the output.
        return 1.0 + 0.1 * noise
    return noise * std


def _plan_shards(specs: dict[str, tuple[int, ...]], num_shards: int) -> list[list[str]]:
    """Split names, in order, into `num_shards` runs of about equal byte size."""
    sizes = {n: math.prod(s) for n, s in specs.items()}
    total = sum(sizes.values())
    shards: list[list[str]] = [[] for _ in range(num_shards)]
    done = 0
    for name, size in sizes.items():
        shards[min(num_shards - 1, done * num_shards // total)].append(name)
        done += size
    return [s for s in shards if s]


# ---------------------------------------------------------------------------------------------
# Building


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock across processes (blocks until free)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _lock_path(dest: Path) -> Path:
    return dest.parent / f".{dest.name}.lock"


def is_complete(path: Path) -> bool:
    """True once a checkpoint directory has been fully written and renamed into place."""
    return (Path(path) / COMPLETE_MARKER).is_file()


def _tokenizer_vocab_size(tokenizer_dir: Path) -> int:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json")).get_vocab_size()


def _write_weights(
    out: Path, config: dict[str, Any], seed: int, progress: bool, num_shards: int
) -> None:
    specs = expected_tensors(config)
    dtype, std = _dtype(config), float(config.get("initializer_range", 0.02))
    plan = _plan_shards(specs, num_shards)
    weight_map: dict[str, str] = {}
    total_bytes = 0
    from tqdm import tqdm

    bar = tqdm(
        total=len(specs),
        desc="building random M1 weights",
        unit="tensor",
        file=sys.stderr,
        disable=not progress,
    )
    with bar:
        for k, names in enumerate(plan, start=1):
            filename = f"model-{k:05d}-of-{len(plan):05d}.safetensors"
            tensors = {}
            for name in names:
                tensors[name] = init_tensor(name, specs[name], seed, std).to(dtype)
                total_bytes += tensors[name].numel() * tensors[name].element_size()
                weight_map[name] = filename
                bar.update(1)
            save_file(tensors, str(out / filename), metadata={"format": "pt"})
    index = {"metadata": {"total_size": total_bytes}, "weight_map": weight_map}
    (out / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")


def _random_writer(
    config: dict[str, Any], seed: int, progress: bool, tokenizer_dir: Path, num_shards: int
) -> Callable[[Path], None]:
    """What a random checkpoint's build writes into its temporary directory."""

    def write(tmp: Path) -> None:
        vocab = _tokenizer_vocab_size(tokenizer_dir)
        if int(config["vocab_size"]) < vocab:
            raise ValueError(
                f"vocab_size {config['vocab_size']} is smaller than the tokenizer's {vocab} tokens"
            )
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        for fname in TOKENIZER_FILES:
            if (tokenizer_dir / fname).is_file():
                shutil.copyfile(tokenizer_dir / fname, tmp / fname)
        _write_weights(tmp, config, seed, progress, num_shards)

    return write


def _build_unlocked(dest: Path, write: Callable[[Path], None], marker: dict[str, Any]) -> None:
    """Run `write` into a fresh temporary directory beside `dest`, then swap it into place.
    The caller holds `dest`'s lock."""
    # Leftovers of crashed builds: safe to remove, as we hold the lock for this dest.
    for stale in dest.parent.glob(f".{dest.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)

    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        write(tmp)
        # The builder's pid only helps debugging (and tests): it says which process built it.
        marker = marker | {"builder_pid": os.getpid()}
        (tmp / COMPLETE_MARKER).write_text(json.dumps(marker) + "\n", encoding="utf-8")
        _swap_into_place(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_into_place(tmp: Path, dest: Path) -> None:
    """Rename the finished build to `dest`; an older dest is moved aside first, then deleted."""
    if dest.exists():
        old = dest.parent / f".{dest.name}.tmp-old-{uuid.uuid4().hex[:8]}"
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)


def build_checkpoint(
    dest: Path,
    config: dict[str, Any],
    seed: int = 0,
    progress: bool = True,
    *,
    tokenizer_dir: Path | None = None,
    num_shards: int = 3,
) -> Path:
    """Write a seeded random checkpoint for any M1-shaped `config` to `dest` and return it.

    The build goes to a temporary directory beside `dest` and is renamed into place at the end,
    under a file lock, so readers never see a half-written checkpoint and two processes never
    interleave. An existing `dest` is replaced. Tokenizer files come from `tokenizer_dir`
    (default: the tiny-m1 preset).
    """
    dest = Path(dest).expanduser().absolute()
    tok_dir = Path(tokenizer_dir) if tokenizer_dir else preset_dir(DEFAULT_PRESET)
    expected_tensors(config)  # fail on a malformed config before touching the disk
    marker = {"format": FORMAT_VERSION, "seed": seed, "key": cache_key(config, seed, tok_dir)}
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(_lock_path(dest)):
        _build_unlocked(dest, _random_writer(config, seed, progress, tok_dir, num_shards), marker)
    return dest


def cache_key(config: dict[str, Any], seed: int, tokenizer_dir: Path | None = None) -> str:
    """Short hash of everything that determines a built checkpoint's bytes."""
    tok_dir = Path(tokenizer_dir) if tokenizer_dir else preset_dir(DEFAULT_PRESET)
    h = hashlib.sha256()
    h.update(
        json.dumps(
            {"format": FORMAT_VERSION, "seed": seed, "config": config}, sort_keys=True
        ).encode()
    )
    for fname in TOKENIZER_FILES:
        path = tok_dir / fname
        if path.is_file():
            h.update(fname.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def ensure_checkpoint(
    name: str,
    config: dict[str, Any],
    cache_dir: Path | None = None,
    seed: int = 0,
    progress: bool = True,
    *,
    tokenizer_dir: Path | None = None,
) -> Path:
    """The cached checkpoint `<cache_dir>/<name>-<key>`, built first if it is missing."""
    if not _SAFE_NAME.match(name):
        raise ValueError(f"checkpoint name {name!r} must be letters, digits, '.', '_' or '-'")
    tok_dir = Path(tokenizer_dir) if tokenizer_dir else preset_dir(DEFAULT_PRESET)
    key = cache_key(config, seed, tok_dir)
    expected_tensors(config)
    marker = {"format": FORMAT_VERSION, "seed": seed, "key": key}
    return _ensure_built(
        f"{name}-{key}", cache_dir, marker, _random_writer(config, seed, progress, tok_dir, 3)
    )


def _ensure_built(
    dirname: str, cache_dir: Path | None, marker: dict[str, Any], write: Callable[[Path], None]
) -> Path:
    dest = default_cache_dir(cache_dir).absolute() / dirname
    if is_complete(dest):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(_lock_path(dest)):
        # Another process may have finished it while we waited for the lock.
        if not is_complete(dest):
            _build_unlocked(dest, write, marker)
    return dest


def ensure_smol_m1(cache_dir: Path | None = None, progress: bool = True) -> Path:
    """The cached smol-m1 checkpoint, converted from the installed GGUF first if missing."""
    from m1_runtime.engine import smol_m1

    source = smol_m1.gguf_path()
    return _ensure_converted(
        SMOL_PRESET,
        source,
        "",
        cache_dir,
        lambda tmp: smol_m1.write_checkpoint(tmp, source, progress),
    )


def smol_hybrid_delta_dir() -> Path:
    """The committed delta of smol-m1-hybrid (delta.safetensors and delta.json)."""
    return configs_dir() / SMOL_HYBRID_PRESET


def ensure_smol_m1_hybrid(cache_dir: Path | None = None, progress: bool = True) -> Path:
    """The cached smol-m1-hybrid checkpoint: the installed GGUF converted, its lightning layers
    initialized from the softmax ones, then the committed delta applied."""
    from m1_runtime.engine import smol_m1, smol_m1_hybrid

    source = smol_m1.gguf_path()
    delta = smol_hybrid_delta_dir()
    digest = hashlib.sha256()
    for name in (smol_m1_hybrid.DELTA_MANIFEST, smol_m1_hybrid.DELTA_TENSORS):
        path = delta / name
        if not path.is_file():
            raise FileNotFoundError(f"smol-m1-hybrid's delta is incomplete: {path} is missing")
        digest.update(path.read_bytes())
    return _ensure_converted(
        SMOL_HYBRID_PRESET,
        source,
        # A new delta is a new model: its hash is part of the cache key.
        f":{smol_m1_hybrid.DELTA_FORMAT}:{digest.hexdigest()}",
        cache_dir,
        lambda tmp: smol_m1_hybrid.write_checkpoint(tmp, source, delta, progress),
    )


def _ensure_converted(
    name: str, source: Path, extra_key: str, cache_dir: Path | None, write: Callable[[Path], None]
) -> Path:
    """A checkpoint converted from the GGUF ``source``, cached under a key of the format, the
    conversion's version, the source's identity and ``extra_key``."""
    from m1_runtime.engine import smol_m1

    origin = smol_m1.source_identity(source)
    key = hashlib.sha256(
        f"{FORMAT_VERSION}:{smol_m1.CONVERSION_VERSION}:{origin}{extra_key}".encode()
    ).hexdigest()[:16]
    marker = {"format": FORMAT_VERSION, "key": key, "source": source.name, "origin": origin}
    return _ensure_built(f"{name}-{key}", cache_dir, marker, write)


def build_variant(
    name: str,
    overrides: dict[str, Any],
    cache_dir: Path | None = None,
    seed: int = 0,
    progress: bool = False,
    base: str = DEFAULT_PRESET,
) -> Path:
    """Cached checkpoint of preset `base` with config keys replaced by `overrides`.

    Example: ``build_variant("softmax", {"attn_type_list": [1] * 8})``.
    """
    config = preset_config(base)
    config.update(overrides)
    return ensure_checkpoint(f"{base}-{name}", config, cache_dir, seed, progress)


# ---------------------------------------------------------------------------------------------
# Resolving --model


def check_model_dir(path: Path) -> None:
    """Raise ValueError naming everything a model directory lacks (config, weights, tokenizer)."""
    missing: list[str] = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    index = path / INDEX_FILE
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (ValueError, KeyError) as exc:
            raise ValueError(f"{index} is not a valid safetensors index: {exc}") from exc
        missing += [
            f"{s} (listed in {INDEX_FILE})" for s in sorted(shards) if not (path / s).is_file()
        ]
    elif not any(path.glob("*.safetensors")):
        missing.append(f"weights (*.safetensors or {INDEX_FILE})")
    has_tokenizer = (path / "tokenizer.json").is_file() or (
        (path / "vocab.json").is_file() and (path / "merges.txt").is_file()
    )
    if not has_tokenizer:
        missing.append("a tokenizer (tokenizer.json, or vocab.json with merges.txt)")
    if missing:
        raise ValueError(f"model directory {path} is missing: {'; '.join(missing)}")


def preset_names() -> list[str]:
    return sorted([*PRESETS, SMOL_PRESET, SMOL_HYBRID_PRESET])


def resolve_model(spec: str | None, cache_dir: Path | None = None) -> Path:
    """Turn a ``--model`` value into a checkpoint directory.

    None is the default model (smol-m1). A preset name builds the preset into the cache if
    needed; an existing directory is checked for config, weights and tokenizer. Anything else
    is a ValueError that lists presets.
    """
    spec = spec or DEFAULT_MODEL
    if spec == SMOL_PRESET:
        return ensure_smol_m1(cache_dir)
    if spec == SMOL_HYBRID_PRESET:
        return ensure_smol_m1_hybrid(cache_dir)
    if spec in PRESETS:
        config, tok_dir = preset_config(spec), preset_dir(spec)
        return ensure_checkpoint(spec, config, cache_dir, tokenizer_dir=tok_dir)
    path = Path(spec).expanduser()
    if path.is_dir():
        check_model_dir(path)
        return path.resolve()
    presets = ", ".join(preset_names())
    if path.exists():
        raise ValueError(
            f"--model {spec!r} is a file; give a model directory or a preset ({presets})"
        )
    raise ValueError(
        f"--model {spec!r} is neither a preset ({presets}) nor an existing model directory"
    )
