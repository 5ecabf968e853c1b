"""Checked types and style: ruff and mypy (configured in pyproject.toml) find nothing in medseg/, and every
``type: ignore`` left in the package says why."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_ruff_finds_nothing() -> None:
    result = _run("ruff", "check", "medseg")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_mypy_finds_nothing() -> None:
    result = _run("mypy")  # files, strictness and plugins: [tool.mypy] in pyproject.toml
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_every_type_ignore_gives_its_reason() -> None:
    bare = []
    for path in sorted((ROOT / "medseg").rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "type: ignore" in line and not re.search(r"type: ignore\[[\w, -]+\]  # \S", line):
                bare.append(f"{path.relative_to(ROOT)}:{number}")
    assert not bare, "type: ignore without [code]  # reason: " + ", ".join(bare)
