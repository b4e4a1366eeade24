"""What the GPU tests measured: printed to stderr and appended to $GPU_RESULTS (JSON lines)."""

from __future__ import annotations

import json
import os
import sys


def report(section: str, **values) -> None:
    line = json.dumps({"section": section, **values}, default=str)
    print(f"[gpu] {line}", file=sys.stderr)
    path = os.environ.get("GPU_RESULTS")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
