"""Options every command spells the same way, and the parsers of option values (text -> typed values).

The convention (README, "Command line"): ``-i/--input`` what is read, ``-o/--output`` what is written,
``-m/--model`` a model package, ``--device``, ``--force`` (replace what exists), ``-q/--quiet``,
``--labels`` label values (a comma-separated list, never a file), ``--label-map`` a label-map file.
This module imports nothing heavy: command modules are imported to build ``medseg --help``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from medseg.errors import MedsegConfigError, MedsegInputError

DEVICE: Any = typer.Option("auto", "--device", metavar="TEXT", help="auto, cpu, cuda, cuda:N or mps.")
FORCE: Any = typer.Option(False, "--force", help="Replace existing outputs.")
QUIET: Any = typer.Option(False, "--quiet", "-q", help="No progress bars.")


def number_in(low: float, high: float | None = None, *, high_open: bool = False, integer: bool = False) -> Callable[[str], float]:
    """A parser for a numeric option in ``[low, high]`` (``[low, high)`` with ``high_open``), for ranges
    Typer's ``min``/``max`` cannot say (they are closed). A value outside is a usage error naming the option."""

    def parse(text: str) -> float:
        try:
            value: float = int(text) if integer else float(text)
        except ValueError:
            raise typer.BadParameter(f"'{text}' is not {'an integer' if integer else 'a number'}") from None
        if value != value or value < low or (high is not None and (value >= high if high_open else value > high)):  # value != value: NaN
            upper = "" if high is None else f", {high:g}{')' if high_open else ']'}"
            raise typer.BadParameter(f"{text} is outside [{low:g}{upper or ', inf)'}")
        return value

    parse.bounds = (low, high, high_open)  # type: ignore[attr-defined]  # tests check that every numeric option has a range
    return parse


def parse_labels(text: str | None, option: str = "--labels") -> list[int] | None:
    """``"1,2,4"`` -> ``[1, 2, 4]``; ``None`` or ``""`` -> ``None``."""
    if not text:
        return None
    try:
        return [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise MedsegInputError(None, f"{option}: expected comma-separated integers, got '{text}'") from None


def parse_extras(values: list[str] | None) -> dict[str, Path]:
    """``["regions=out/regions.nii.gz"]`` -> ``{"regions": Path(...)}`` (``--extra NAME=PATH``)."""
    extras: dict[str, Path] = {}
    for value in values or []:
        name, sep, path = value.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise MedsegInputError(None, f"--extra: expected NAME=PATH (e.g. regions=regions.nii.gz), got '{value}'")
        if name.strip() in extras:
            raise MedsegInputError(None, f"--extra: '{name.strip()}' given twice")
        extras[name.strip()] = Path(path.strip())
    return extras


def parse_sets(values: list[str] | None) -> dict[str, Any]:
    """``["train.lr=0.001", "train.patch_size=[64,64,32]"]`` -> ``{"train.lr": 0.001, ...}`` (``--set KEY=VALUE``).

    Values are read as YAML (numbers, booleans, lists, ``null``), as they would be in the pipeline file.
    """
    import yaml

    sets: dict[str, Any] = {}
    for value in values or []:
        key, sep, text = value.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise MedsegConfigError(f"--set: expected KEY=VALUE with a dotted key (e.g. train.lr=0.001), got '{value}'")
        try:
            sets[key] = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            raise MedsegConfigError(f"--set {key}: '{text}' is not a valid YAML value") from None
    return sets
