"""Staged pipelines: several trainings run in order from one YAML, each stage starting from earlier ones.

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

``medseg train staged.yaml -o RUN`` trains every stage into ``RUN/<stage>/`` (``--stage NAME`` runs one);
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

from medseg.config import PipelineConfig, apply_overrides, read_yaml_mapping, validate_pipeline
from medseg.data.registry import generate_phantom
from medseg.model.package import read_manifest
from medseg.progress import console
from medseg.engine.variants import create_trainer
from medseg.errors import MedsegConfigError, MedsegModelError, MedsegOutputError

_STAGE_REF = re.compile(r"^stage:(?P<name>[A-Za-z0-9_.-]+)$")
_STAGE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass
class Stage:
    """One validated stage: its name, its pipeline and its run folder."""

    name: str
    config: PipelineConfig
    run_dir: Path


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``: nested mappings merge key by key, other values replace (inputs untouched)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else copy.deepcopy(value)
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
    """Validate every stage of a staged YAML for a run into ``run_dir`` (``stage:NAME`` refs resolved;
    ``overrides``, dotted keys as in ``medseg train --set``, set in every stage after its own keys).

    Raises:
        MedsegConfigError: no/empty ``stages`` list, a stage without a valid unique ``name``, a reference to a
        stage that does not come earlier, or any stage that is not a valid pipeline (named in one line).
    """
    path, run_dir = Path(path), Path(run_dir).resolve()
    raw = read_yaml_mapping(path)
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


def _shared_data(stage: Stage, run_dir: Path) -> PipelineConfig:
    """The stage's config reading the run's shared phantom dataset (generated on first use)."""
    syn = stage.config.data.synthetic
    if syn is None:
        return stage.config
    dataset = run_dir / "data" / "dataset.json"
    if not dataset.is_file():
        generate_phantom(syn.kind, dataset.parent, syn.n_train, syn.n_test, syn.seed, **syn.options)
    data = stage.config.data.model_copy(update={"synthetic": None, "dataset": str(dataset)})
    return stage.config.model_copy(update={"data": data})


def _finished(stage: Stage, epochs: int) -> bool:
    try:
        return int(read_manifest(stage.run_dir / "model").training.get("epochs", 0)) >= epochs
    except MedsegModelError:
        return False


def run_stages(
    path: str | Path,
    run_dir: str | Path,
    only: str | None = None,
    device: str = "auto",
    resume: bool = False,
    epochs: int | None = None,
    force: bool = False,
    progress: bool = True,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train the stages of ``path`` in order into ``run_dir/<stage>`` (or only the stage ``only``).

    ``epochs`` overrides every stage's ``train.epochs``. Returns a summary with one entry per stage and
    ``model`` = the last trained stage's package.
    """
    run_dir = Path(run_dir)
    stages = load_stages(path, run_dir, overrides)
    names = [s.name for s in stages]
    if only is not None and only not in names:
        raise MedsegConfigError(f"--stage: no stage '{only}' in {path} (stages: {', '.join(names)})")
    if only is None and not resume and not force and run_dir.exists() and any(run_dir.iterdir()):
        raise MedsegOutputError(f"{run_dir}: run folder exists (use --resume to continue or --force to start afresh)")
    summaries = []
    for stage in stages:
        if only is not None and stage.name != only:
            continue
        config = _shared_data(stage, run_dir.resolve())
        target = epochs or config.train.epochs
        if resume and _finished(stage, target):
            console.print(f"stage {stage.name}: finished ({target} epochs), skipped")
            summaries.append({"stage": stage.name, "model": str(stage.run_dir / "model"), "skipped": True})
            continue
        console.print(f"stage {stage.name} ({config.network.name}) -> {stage.run_dir}")
        stage_resume = resume and (stage.run_dir / "checkpoints" / "last").is_dir()
        trainer = create_trainer(config, stage.run_dir, device=device, resume=stage_resume, epochs=epochs, force=force, progress=progress)
        summaries.append({"stage": stage.name, **trainer.fit()})
    return {"run_dir": str(run_dir), "stages": summaries, "model": summaries[-1]["model"]}
