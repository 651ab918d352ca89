"""File trees as the puller tests compare them."""

from __future__ import annotations

from pathlib import Path


def tree(root: Path) -> dict[str, bytes]:
    """relative path -> content of every file under `root`."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def entries(root: Path) -> list[str]:
    """Everything under `root`, files and dirs, hidden ones too."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
