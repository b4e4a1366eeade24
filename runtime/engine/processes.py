"""The engine's processes: the environment vLLM reads before it starts them, how CPU ranks
share cores, and ending every engine process this server started (none may outlive it)."""

from __future__ import annotations

import math
import os
from typing import Any

from m1_runtime.engine.api import EngineConfig


def prepare_vllm_environment(config: EngineConfig) -> None:
    # vLLM reads these at import time, in this process and in the engine processes it spawns:
    # logs must never reach stdout (it carries MCP's stdio stream).
    os.environ["VLLM_LOGGING_STREAM"] = "ext://sys.stderr"
    os.environ.setdefault("VLLM_LOGGING_LEVEL", config.log_level)
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    os.environ.setdefault("VLLM_DO_NOT_TRACK", "1")
    # Forking a process that runs an event loop and threads is unsafe; spawn is clean.
    os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
    if config.kv_cache_gib is not None:
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, math.ceil(config.kv_cache_gib)))


def cpu_binding(ranks: int) -> str:
    """Split the cores this process may use into `ranks` groups, as vLLM's CPU binding wants
    them: '0,1,2,3|4,5,6,7'."""
    cores = sorted(os.sched_getaffinity(0))
    per = max(1, len(cores) // ranks)
    groups = [cores[i * per : (i + 1) * per] or cores[-1:] for i in range(ranks)]
    return "|".join(",".join(map(str, g)) for g in groups)


def child_processes() -> list[Any]:
    import psutil  # a vLLM dependency

    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return []
    # multiprocessing's resource tracker ignores SIGTERM by design and exits by itself when
    # this process does; it holds no engine state.
    kept = []
    for proc in children:
        try:
            if "resource_tracker" not in " ".join(proc.cmdline()):
                kept.append(proc)
        except psutil.Error:
            pass
    return kept


def terminate_children(grace_s: float = 5.0) -> None:
    """End the engine processes this process started, by pid: first politely, then for sure."""
    import psutil

    children = child_processes()
    for proc in children:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(children, timeout=grace_s)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass


def executor_backend(config: EngineConfig, platform: Any) -> str | None:
    """The backend vLLM runs the ranks with: the configured one, else "mp" when there are
    several ranks (None lets vLLM run one rank its own way).

    Ray is checked here, before vLLM starts its engine process, because vLLM's own refusals
    arrive late and buried in an engine-core traceback: its CPU platform names no Ray device
    (vLLM 0.32 raises "current platform cpu does not support ray" after Ray has started).
    """
    ranks = config.tensor_parallel_size * config.pipeline_parallel_size
    backend = config.distributed_executor_backend or ("mp" if ranks > 1 else None)
    if backend not in (None, "mp", "ray"):
        raise ValueError(f"distributed_executor_backend must be 'mp' or 'ray', not {backend!r}")
    if backend == "ray":
        if not getattr(platform, "ray_device_key", ""):
            raise ValueError(
                f"vLLM cannot run ranks through Ray on its {platform.device_name} platform "
                "(it names no Ray device there); use distributed_executor_backend = 'mp'"
            )
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise ValueError(
                "distributed_executor_backend = 'ray' needs Ray in this environment "
                "(pip install 'ray[default]', the same version on every node)"
            )
    return backend
