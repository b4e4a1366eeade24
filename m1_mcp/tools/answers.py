r"""Answer extraction: the final answer a reasoning model states in its free text.

Math prompts ask for the answer in `\boxed{}`; small models often say "the answer is ..." or
just end on it instead, so the rules fall back in that order.
"""

from __future__ import annotations

import re

_BOX = "\\boxed{"
_STATED_ANSWER = re.compile(r"\b(?:final answer|the answer)\s*(?:is|:)\s*:?\s*(.+)", re.IGNORECASE)


def extract_boxed(text: str) -> str | None:
    r"""The content of the last `\boxed{...}` in text, braces balanced; None if there is none."""
    start = text.rfind(_BOX)
    while start >= 0:
        i = start + len(_BOX)
        depth = 1
        for j in range(i, len(text)):
            ch = text[j]
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    return text[i:j].strip()
        # Unbalanced (cut off by the budget): try an earlier one.
        start = text.rfind(_BOX, 0, start)
    return None


def final_answer(text: str) -> str:
    r"""`\boxed{}` content if present, else what the last "the answer is ..." states, else the
    last non-empty line."""
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        stated = _STATED_ANSWER.search(line)
        if stated and stated.group(1).strip(" .*"):
            return stated.group(1).strip(" .*")
    return lines[-1] if lines else ""
