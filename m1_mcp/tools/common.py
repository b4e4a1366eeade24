"""What every tool module shares: the app state, the tools' annotations, input errors and
taking a text argument (inline or from a file)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mcp.types import ToolAnnotations

from m1_mcp.files import read_text_file
from m1_mcp.jobs import JobStore
from m1_mcp.settings import Settings
from m1_mcp.tools.progress import HEARTBEAT_S
from m1_runtime.engine import Engine


@dataclass
class App:
    settings: Settings
    engine: Engine
    heartbeat_s: float = HEARTBEAT_S  # longest silence in a tool call's progress
    jobs: JobStore = field(init=False)

    def __post_init__(self) -> None:
        self.jobs = JobStore(self.settings.max_jobs, self.settings.job_ttl_s)


# Every tool only reads (its input, and files under the configured roots) and reaches nothing
# outside this machine, so hosts need not ask before each call.
READ_ONLY = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)


class InputError(ValueError):
    """The caller's input cannot be served; the message says what to change."""


def take_text(app: App, text: str | None, path: str | None, what: str) -> str:
    """Exactly one of inline text or a root-checked path; bounded; not blank."""
    if (text is None) == (path is None):
        raise InputError(f"give either '{what}' or 'path', not both and not neither")
    if path is not None:
        s = app.settings
        text = read_text_file(path, s.file_roots, s.max_file_bytes)
    assert text is not None
    if not text.strip():
        raise InputError(f"the {what} is empty")
    if len(text) > app.settings.max_input_chars:
        raise InputError(
            f"the {what} has {len(text)} characters; the limit is {app.settings.max_input_chars}"
        )
    return text
