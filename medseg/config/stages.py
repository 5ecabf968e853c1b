"""Staged pipelines (the configuration side): several trainings run in order from one YAML, each stage starting from earlier ones.

A staged YAML is an ordinary pipeline YAML plus a ``stages:`` list. Each stage is a mapping with a ``name``
and the keys it changes; it is deep-merged over the shared top-level keys (mappings merge key by key, any
other value replaces), then validated as a whole pipeline. A string ``stage:NAME`` anywhere in a stage is
the model package of the earlier stage ``NAME`` (``network.init_from``, ``roi.localiser``)::

    name: liver_tumor_hdenseunet
    data: {...}
    stages:
      - name: localiser
        network: {name: unet, kwargs: {...}}
      - name: dense2d
        network: {name: dense_unet_2d, slice_axis: 2, slice_context: 1}
        roi: {localiser: stage:localiser, labels: [1, 2]}
      - name: hybrid
        network: {name: hdenseunet, init_from: {path: stage:dense2d, target: net2d}}
        roi: {localiser: stage:localiser, labels: [1, 2]}

``medseg train staged.yaml --out RUN`` trains every stage into ``RUN/<stage>/`` (``--stage NAME`` runs one);
the last stage's ``RUN/<stage>/model`` is the result. A synthetic dataset is generated once into
``RUN/data`` and shared, so every stage sees the same cases and the same train/validation split (it
depends on ``seed`` and ``data``, which stages should not change). ``--resume`` skips finished stages and
resumes the interrupted one.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseg.config.base import apply_overrides, read_yaml_mapping
from medseg.config.pipeline import PipelineConfig, validate_pipeline
from medseg.errors import MedsegConfigError

_STAGE_REF = re.compile(r"^stage:(?P<name>[A-Za-z0-9_.-]+)$")
_STAGE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass
class Stage:
    """One validated stage: its name, its pipeline and its run folder."""

    name: str
    config: PipelineConfig
    run_dir: Path


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``: nested mappings merge key by key, other values replace (inputs untouched).

    A mapping that names a different ``kind`` (e.g. a stage's ``output: {kind: labels}`` over a shared
    ``output: {kind: liver_tumor, ...}``) replaces the base mapping: one kind's options do not carry over to another.
    """
    out = copy.deepcopy(base)
    for key, value in override.items():
        old = out.get(key)
        if isinstance(value, dict) and isinstance(old, dict) and value.get("kind", old.get("kind")) == old.get("kind"):
            out[key] = deep_merge(old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _resolve_refs(node: Any, done: dict[str, Path], where: str) -> Any:
    if isinstance(node, dict):
        return {k: _resolve_refs(v, done, where) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve_refs(v, done, where) for v in node]
    if isinstance(node, str) and (match := _STAGE_REF.match(node)):
        if match["name"] not in done:
            raise MedsegConfigError(f"{where}: '{node}' does not name an earlier stage (earlier: {', '.join(done) or 'none'})")
        return str(done[match["name"]] / "model")
    return node


def is_staged(path: str | Path) -> bool:
    """Whether the YAML at ``path`` has a ``stages:`` list."""
    return "stages" in read_yaml_mapping(Path(path))


def load_stages(path: str | Path, run_dir: str | Path, overrides: dict[str, Any] | None = None) -> list[Stage]:
    """Validate every stage of a staged YAML for a run into ``run_dir`` (``stage:NAME`` refs resolved).

    ``overrides`` (dotted keys, ``medseg train --set/--data``) apply to every stage, after its own keys.

    Raises:
        MedsegConfigError: no/empty ``stages`` list, a stage without a valid unique ``name``, a reference to a
        stage that does not come earlier, or any stage that is not a valid pipeline (named in one line).
    """
    path = Path(path)
    return validate_stages(read_yaml_mapping(path), path, run_dir, overrides)


def validate_stages(raw: dict[str, Any], path: str | Path, run_dir: str | Path, overrides: dict[str, Any] | None = None) -> list[Stage]:
    """:func:`load_stages` on a mapping already read (``path``: where it is, or will be, written)."""
    path, run_dir, raw = Path(path), Path(run_dir).resolve(), dict(raw)
    stages = raw.pop("stages", None)
    if not isinstance(stages, list) or not stages:
        raise MedsegConfigError(f"{path}: stages: expected a non-empty list of stages")
    base_name = str(raw.get("name", path.stem))
    done: dict[str, Path] = {}
    out = []
    for index, entry in enumerate(stages):
        where = f"{path}: stages[{index}]"
        if not isinstance(entry, dict) or not _STAGE_NAME.match(str(entry.get("name", ""))):
            raise MedsegConfigError(f"{where}: each stage needs a 'name' (letters, digits, '_', '-', '.')")
        entry = dict(entry)
        name = str(entry.pop("name"))
        if name in done or name == "data":
            raise MedsegConfigError(f"{where}: stage name '{name}' is used twice or reserved")
        merged = _resolve_refs(apply_overrides(deep_merge(raw, entry), overrides or {}), done, f"{where} ({name})")
        merged["name"] = f"{base_name}_{name}"
        config = validate_pipeline(merged, source=f"{where} ({name})", base_dir=path.parent)
        done[name] = run_dir / name
        out.append(Stage(name, config, run_dir / name))
    return out


__all__ = ["Stage", "deep_merge", "is_staged", "load_stages", "validate_stages"]
