"""Compute kernels for the MiniMax-M1 model (device dispatch lives in each subpackage)."""

from m1_kernels.lightning import lightning_decode, lightning_prefill

__all__ = ["lightning_decode", "lightning_prefill"]
