"""Train a pipeline YAML, plain or staged: what ``medseg train`` and :func:`medseg.train` run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medseg.config import load_pipeline
from medseg.config.stages import is_staged
from medseg.engine import distributed
from medseg.engine.stages import run_stages
from medseg.engine.variants import create_trainer
from medseg.errors import MedsegConfigError


def train_pipeline(
    pipeline: str | Path,
    out: str | Path,
    *,
    stage: str | None = None,
    overrides: dict[str, Any] | None = None,
    device: str = "auto",
    resume: bool = False,
    epochs: int | None = None,
    force: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``pipeline`` into the run folder ``out``; the best model is exported to ``out/model``
    (``out/<stage>/model`` per stage of a staged YAML). Returns the run summary (``summary["model"]``: the package).

    Args:
        overrides: ``{"train.epochs": 5, ...}`` dotted keys set before validation (plain pipelines).
        stage: a staged pipeline's stage to run alone.
    """
    try:
        if is_staged(pipeline):
            if overrides:
                raise MedsegConfigError(f"{pipeline}: overrides apply to plain pipelines; edit the staged YAML's shared keys instead")
            return run_stages(pipeline, out, stage, device=device, resume=resume, epochs=epochs, force=force, progress=progress)
        if stage is not None:
            raise MedsegConfigError(f"--stage: {pipeline} is not a staged pipeline (it has no 'stages:' list)")
        config = load_pipeline(pipeline, overrides)
        return create_trainer(config, out, device=device, resume=resume, epochs=epochs, force=force, progress=progress).fit()
    finally:
        distributed.finish()


__all__ = ["train_pipeline"]
