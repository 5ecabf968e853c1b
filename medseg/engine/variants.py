"""Trainer variants by pipeline ``task``: ``segmentation`` (the base loop) and the variants that
subclass it (semi-supervised mutual training, registration) without copying the loop."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medseg.config import PipelineConfig
from medseg.engine.trainer import Trainer
from medseg.errors import MedsegConfigError

_TRAINERS: dict[str, type[Trainer]] = {"segmentation": Trainer}
#: modules that register variants when imported (kept lazy: only the task in use is imported)
_VARIANT_MODULES: dict[str, str] = {"semi_supervised": "medseg.engine.semisup", "registration": "medseg.engine.registration"}


def register_trainer(task: str) -> Callable[[type[Trainer]], type[Trainer]]:
    """Class decorator: ``task`` in a pipeline YAML selects this trainer."""

    def decorator(cls: type[Trainer]) -> type[Trainer]:
        _TRAINERS[task] = cls
        return cls

    return decorator


def create_trainer(config: PipelineConfig, run_dir: str | Path, **kwargs: Any) -> Trainer:
    """The trainer for ``config.task``."""
    if config.task not in _TRAINERS and config.task in _VARIANT_MODULES:
        importlib.import_module(_VARIANT_MODULES[config.task])
    if config.task not in _TRAINERS:
        known = sorted(set(_TRAINERS) | set(_VARIANT_MODULES))
        raise MedsegConfigError(f"task: unknown task '{config.task}'; known: {', '.join(known)}")
    return _TRAINERS[config.task](config, run_dir, **kwargs)
