"""Linearize SmolLM2-135M-Instruct into M1's hybrid lightning layout (issue 15).

``python -m scripts.linearize --help`` runs the recipe: teacher text, stage 1 (each lightning
layer matches the teacher's attention output on the teacher's hidden states), stage 2 (KL to
the teacher's logits end to end), the quality table, and a low-rank delta that
``m1_runtime.engine.smol_m1_hybrid`` applies to the GGUF's weights.

Modules: ``model`` (the training-side M1 model), ``data`` (prompts and teacher text), ``train``
(the two stages), ``evaluate`` (quality against the teacher), ``cli`` (the one command).
"""
