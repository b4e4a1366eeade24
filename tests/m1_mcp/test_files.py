"""Path inputs: only under the roots, UTF-8 text only, capped in size."""

from __future__ import annotations

from pathlib import Path

import pytest

from m1_mcp.files import FileAccessError, read_text_file


def test_reads_text_under_root(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("print('hé')\n", encoding="utf-8")
    assert read_text_file(str(tmp_path / "a.py"), [tmp_path], 100) == "print('hé')\n"
    assert read_text_file("a.py", [tmp_path], 100) == "print('hé')\n"  # relative to first root


@pytest.mark.parametrize(
    ("setup", "needle"),
    [
        ("no_roots", "no file roots are configured"),
        ("outside", "outside the allowed file roots"),
        ("dotdot", "outside the allowed file roots"),
        ("symlink_out", "outside the allowed file roots"),
        ("missing", "no such file"),
        ("symlink_loop", "symbolic links form a loop"),
        ("binary", "binary"),
        ("latin1", "not UTF-8"),
        ("big", "the limit is 10 bytes"),
        ("dir", "not a regular file"),
        ("empty", "is empty"),
    ],
)
def test_refusals(tmp_path: Path, setup: str, needle: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    roots = [root]
    path = str(root / "f.txt")
    if setup == "no_roots":
        (root / "f.txt").write_text("x")
        roots = []
    elif setup == "outside":
        path = str(outside)
    elif setup == "dotdot":
        path = str(root / ".." / "secret.txt")
    elif setup == "symlink_out":
        (root / "link.txt").symlink_to(outside)
        path = str(root / "link.txt")
    elif setup == "symlink_loop":
        (root / "a.txt").symlink_to(root / "b.txt")
        (root / "b.txt").symlink_to(root / "a.txt")
        path = str(root / "a.txt")
    elif setup == "binary":
        (root / "f.txt").write_bytes(b"\x7fELF\x00\x01")
    elif setup == "latin1":
        (root / "f.txt").write_bytes("caf\xe9".encode("latin-1"))
    elif setup == "big":
        (root / "f.txt").write_text("x" * 11)
    elif setup == "dir":
        (root / "d").mkdir()
        path = str(root / "d")
    elif setup == "empty":
        (root / "f.txt").write_text("  \n")
    with pytest.raises(FileAccessError, match=needle):
        read_text_file(path, roots, 10)
