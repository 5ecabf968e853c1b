"""Trainer variants by pipeline ``task``: ``segmentation`` (the base loop,
:class:`~medseg.engine.trainer.Trainer`) and the variants that subclass it (semi-supervised mutual training,
registration) without copying the loop. Each registers itself with ``@register_trainer(task)``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from medseg.config import PipelineConfig
from medseg.registry import Registry

if TYPE_CHECKING:
    from medseg.engine.trainer import Trainer

#: trainers by ``task``; only the module of the task in use is imported
TRAINERS: Registry[type[Trainer]] = Registry(
    "task",
    packages=["medseg.engine"],
    modules={"segmentation": "medseg.engine.trainer", "semi_supervised": "medseg.engine.semisup", "registration": "medseg.engine.registration"},
    option="task",
)
#: ``@register_trainer(task)``: ``task: <task>`` in a pipeline YAML selects the decorated trainer class
register_trainer = TRAINERS.register


def create_trainer(config: PipelineConfig, run_dir: str | Path, **kwargs: Any) -> Trainer:
    """The trainer for ``config.task``."""
    return TRAINERS.get(config.task)(config, run_dir, **kwargs)
