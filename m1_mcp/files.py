"""Reading path inputs: only under configured roots, only UTF-8 text, only up to a size cap."""

from __future__ import annotations

import errno
from pathlib import Path


class FileAccessError(ValueError):
    """A path input cannot be read; the message says what to change."""


def read_text_file(path: str, roots: list[Path], max_bytes: int) -> str:
    if not roots:
        raise FileAccessError(
            "reading files is disabled: no file roots are configured "
            "(start the server with --file-root DIR or M1_MCP_FILE_ROOTS), or pass the text inline"
        )
    if "\x00" in path:
        raise FileAccessError("the path contains a NUL character")
    # resolve() follows symlinks, so a link inside a root that points outside is refused too.
    target = Path(path).expanduser()
    if not target.is_absolute():
        target = roots[0] / target
    try:
        target = target.resolve(strict=True)
    except FileNotFoundError as exc:
        raise FileAccessError(f"cannot open {path!r}: no such file") from exc
    except RuntimeError as exc:  # Python < 3.13 reports a symlink loop this way
        raise FileAccessError(f"cannot open {path!r}: its symbolic links form a loop") from exc
    except OSError as exc:  # ELOOP on 3.13+, permissions, a path too long, ...
        reason = "its symbolic links form a loop" if exc.errno == errno.ELOOP else exc.strerror
        raise FileAccessError(f"cannot open {path!r}: {reason}") from exc
    allowed = [r.expanduser().resolve() for r in roots]
    if not any(target.is_relative_to(r) for r in allowed):
        raise FileAccessError(
            f"{path!r} is outside the allowed file roots ({', '.join(map(str, allowed))})"
        )
    if not target.is_file():
        raise FileAccessError(f"{path!r} is not a regular file")
    size = target.stat().st_size
    if size > max_bytes:
        raise FileAccessError(f"{path!r} is {size} bytes; the limit is {max_bytes} bytes")
    data = target.read_bytes()[: max_bytes + 1]
    if b"\x00" in data:
        raise FileAccessError(f"{path!r} looks like a binary file (it contains NUL bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileAccessError(f"{path!r} is not UTF-8 text (bad byte at {exc.start})") from exc
    if not text.strip():
        raise FileAccessError(f"{path!r} is empty")
    return text
