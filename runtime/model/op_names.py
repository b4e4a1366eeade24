"""Names of the custom ops the model registers in vLLM's op library, in a module of their own:
the plugin needs them at start-up, where importing the layers (torch, Triton) would be too heavy,
and the layers need them where they register the ops."""

# The lightning-attention op (torch.ops.vllm.<name>), registered by m1_runtime.model.lightning.
LIGHTNING_OP_NAME = "m1_lightning_attention"
LIGHTNING_OP = f"vllm::{LIGHTNING_OP_NAME}"
