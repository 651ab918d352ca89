"""The plugin author's guide shows the example package's files as they are."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "plugin-guide.md"
EXAMPLE = ROOT / "examples" / "echo-runtime"


def fenced_blocks(markdown: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", markdown, flags=re.DOTALL | re.MULTILINE)


def test_the_worked_example_is_the_example_packages_adapter() -> None:
    blocks = fenced_blocks(GUIDE.read_text(), "python")
    assert (EXAMPLE / "echo_runtime" / "adapter.py").read_text() in blocks


def test_the_registration_shown_is_the_example_packages_pyproject() -> None:
    blocks = fenced_blocks(GUIDE.read_text(), "toml")
    assert (EXAMPLE / "pyproject.toml").read_text() in blocks
