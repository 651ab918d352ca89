"""Layout plans: the files a model server wants, decided purely, then applied.

A plan is a list of entries relative to the model's repository dir: links to
pulled files and small generated files (config.pbtxt, model-settings.json).
Planners are pure functions, table-tested; `apply_layout` does the writing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mesh_sidecar.errors import InvalidRequest


@dataclass(frozen=True)
class Link:
    """`path` (relative to the repository dir) is a symlink to the pulled `source`."""

    path: str
    source: Path


@dataclass(frozen=True)
class WriteFile:
    """`path` (relative to the repository dir) is a generated file."""

    path: str
    content: str


LayoutPlan = Sequence[Link | WriteFile]


def _target(root: Path, relative: str) -> Path:
    parts = PurePosixPath(relative).parts
    if not parts or relative.startswith("/") or ".." in parts:
        raise InvalidRequest(f"layout path {relative!r} leaves the model's directory")
    return root.joinpath(*parts)


def apply_layout(plan: LayoutPlan, root: Path) -> None:
    """Create `root` and write the plan into it; on failure `root` is removed."""
    root.mkdir(parents=True, exist_ok=False)
    try:
        for entry in plan:
            path = _target(root, entry.path)
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(entry, Link):
                os.symlink(entry.source, path)
            else:
                path.write_text(entry.content)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def render_layout(plan: LayoutPlan, root: str) -> str:
    """The plan as a sorted tree listing, one line per entry, for people and tests."""
    lines = [root.rstrip("/") + "/"]
    for entry in sorted(plan, key=lambda e: e.path):
        if isinstance(entry, Link):
            lines.append(f"  {entry.path} -> {entry.source}")
        else:
            lines.append(f"  {entry.path} (generated, {len(entry.content)} bytes)")
    return "\n".join(lines)
