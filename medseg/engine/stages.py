"""Staged pipelines (the training side): run the stages of a staged YAML in order, each in its own run folder.

The YAML's stages are merged and validated by :mod:`medseg.config.stages` (see there for the format).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medseg.config import PipelineConfig
from medseg.config.stages import Stage, load_stages
from medseg.data.registry import generate_phantom
from medseg.engine.checkpoint import has_checkpoint
from medseg.engine.variants import create_trainer
from medseg.errors import MedsegConfigError, MedsegModelError, MedsegOutputError
from medseg.model.package import read_manifest
from medseg.progress import console


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

    ``epochs`` overrides every stage's ``train.epochs``; ``overrides`` (dotted keys) every stage's keys.
    Returns a summary with one entry per stage and ``model`` = the last trained stage's package.
    """
    run_dir = Path(run_dir)
    stages = load_stages(path, run_dir, overrides)
    names = [s.name for s in stages]
    if only is not None and only not in names:
        raise MedsegConfigError(f"--stage: no stage '{only}' in {path} (stages: {', '.join(names)})")
    if only is None and not resume and not force and has_checkpoint(run_dir):
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
