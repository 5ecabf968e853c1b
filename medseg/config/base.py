"""The base of every configuration schema: strict models, one-line validation errors, YAML reading, overrides."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from medseg.errors import MedsegConfigError


class Strict(BaseModel):
    """Base: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


def _known_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    current: Any = model
    for part in loc[:-1]:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        current = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}))


def format_validation_error(exc: ValidationError, model: type[BaseModel], source: str, prefix: str = "") -> str:
    """First problem of a pydantic error as one line naming the key (``prefix.key`` for a nested section)."""
    err = exc.errors()[0]
    loc = tuple(err.get("loc", ()))
    key = ".".join(str(p) for p in (prefix, *loc) if p != "") or "(top level)"
    if err.get("type") == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _known_keys(model, loc), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        msg = f"unknown key{hint}"
    else:
        msg = err.get("msg", "invalid value")
    more = len(exc.errors()) - 1
    return f"{source}: {key}: {msg}" + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set ``{"section.key": value}`` overrides in a raw pipeline mapping (in place, missing sections created);
    returns ``raw``. Example: ``apply_overrides(raw, {"train.epochs": 2})``."""
    for dotted, value in overrides.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return raw


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """The top-level mapping of a pipeline YAML file (one-line :class:`MedsegConfigError` otherwise)."""
    if not path.is_file():
        raise MedsegConfigError(f"{path}: pipeline file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise MedsegConfigError(f"{path}: not valid YAML{where}") from exc
    if not isinstance(raw, dict):
        raise MedsegConfigError(f"{path}: expected a mapping of keys at the top level")
    return raw


__all__ = ["Strict", "apply_overrides", "format_validation_error", "read_yaml_mapping"]
