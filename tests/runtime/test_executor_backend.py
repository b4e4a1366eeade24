"""Which backend runs the engine's ranks, and the refusals that must come before vLLM starts.

vLLM 0.32's CPU platform names no Ray device, so `distributed_executor_backend="ray"` fails there
only after Ray has started, inside the engine process ("current platform cpu does not support
ray"). The engine refuses it first, with a message that says what to use instead.
"""

from __future__ import annotations

import importlib.util

import anyio
import pytest
from vllm.platforms import current_platform
from vllm.platforms.interface import Platform, PlatformEnum

from m1_runtime.engine import Engine, EngineConfig
from m1_runtime.engine.processes import child_processes, executor_backend


class RayCapablePlatform(Platform):
    """A platform that names a Ray device, as vLLM's CUDA one does (which cannot be imported
    on a machine without CUDA)."""

    _enum = PlatformEnum.CUDA
    device_name = "cuda"
    ray_device_key = "GPU"


def test_mp_is_the_default_for_several_ranks_and_none_for_one() -> None:
    assert executor_backend(EngineConfig(), current_platform) is None
    assert executor_backend(EngineConfig(tensor_parallel_size=2), current_platform) == "mp"
    assert executor_backend(EngineConfig(pipeline_parallel_size=2), current_platform) == "mp"
    single_mp = EngineConfig(distributed_executor_backend="mp")
    assert executor_backend(single_mp, current_platform) == "mp"
    with pytest.raises(ValueError, match="'mp' or 'ray'"):
        executor_backend(EngineConfig(distributed_executor_backend="slurm"), current_platform)


@pytest.mark.skipif(not current_platform.is_cpu(), reason="vLLM's CPU platform refuses Ray")
def test_ray_is_refused_on_the_cpu_platform() -> None:
    config = EngineConfig(pipeline_parallel_size=2, distributed_executor_backend="ray")
    with pytest.raises(ValueError, match="cannot run ranks through Ray on its cpu platform"):
        executor_backend(config, current_platform)


def test_ray_needs_ray_installed() -> None:
    config = EngineConfig(tensor_parallel_size=2, distributed_executor_backend="ray")
    if importlib.util.find_spec("ray") is None:
        with pytest.raises(ValueError, match="needs Ray in this environment"):
            executor_backend(config, RayCapablePlatform)
    else:
        assert executor_backend(config, RayCapablePlatform) == "ray"


@pytest.mark.skipif(not current_platform.is_cpu(), reason="vLLM's CPU platform refuses Ray")
def test_engine_with_ray_on_cpu_fails_before_vllm_starts() -> None:
    """The engine reports the refusal as its failure, and no engine process was started."""
    engine = Engine(
        EngineConfig(model="tiny-m1", tensor_parallel_size=2, distributed_executor_backend="ray")
    )

    async def start() -> None:
        with anyio.fail_after(120):  # no vLLM engine start: building the checkpoint at most
            await engine.start()
        await engine.stop()

    anyio.run(start)
    assert engine.state in ("failed", "stopped")
    assert engine.error is not None and "through Ray on its cpu platform" in engine.error
    assert child_processes() == []
