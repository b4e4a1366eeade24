"""m1_runtime: the model vLLM loads (model/), the chat formats both sides share (chat/), and
the engine the server owns (engine/). Installed under the import name `m1_runtime` (the folder
is `runtime/`), so it cannot collide with another package called `runtime`."""
