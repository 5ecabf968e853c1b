"""One training run from a pipeline YAML (plain or staged), with command-line overrides (``medseg train``).

``--set key.path=value`` and ``--data PATH`` become an overrides mapping (:func:`pipeline_overrides`); every
key is checked against the pipeline schema first (one-line error with a did-you-mean), then the values are
set in the YAML's mapping and the whole pipeline is validated by the same schema as the file itself.
In a staged pipeline the overrides apply to every stage (after the stage's own keys).
"""

from __future__ import annotations

import difflib
import shutil
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from medseg.config import PipelineConfig, load_pipeline
from medseg.config.stages import is_staged
from medseg.engine import distributed
from medseg.engine.checkpoint import has_checkpoint
from medseg.engine.stages import run_stages
from medseg.engine.variants import create_trainer
from medseg.errors import MedsegConfigError


def _section(annotation: Any) -> type[BaseModel] | None:
    """The schema of a nested section (``SyntheticDataConfig | None`` -> ``SyntheticDataConfig``), else ``None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _section(arg)
        if found is not None:
            return found
    return None


def _is_mapping(annotation: Any) -> bool:
    """Whether a field holds a free-form mapping (``network.kwargs``, ``data.labels``): any sub-key goes."""
    return any(typing.get_origin(a) is dict or a is dict for a in (annotation, *typing.get_args(annotation)))


def check_override_keys(overrides: dict[str, Any], schema: type[BaseModel] = PipelineConfig, option: str = "--set") -> None:
    """Every dotted key names a field of ``schema`` (or lies inside a free-form mapping).

    Raises:
        MedsegConfigError: ``--set train.epoch=3: unknown key 'epoch' in 'train' (did you mean 'train.epochs'?)``.
    """
    for dotted, value in overrides.items():
        current: type[BaseModel] | None = schema
        parts = dotted.split(".")
        for depth, part in enumerate(parts):
            if current is None:
                raise MedsegConfigError(f"{option} {dotted}={value}: '{'.'.join(parts[:depth])}' is a value, not a section")
            fields = current.model_fields
            if part not in fields:
                where = ".".join(parts[:depth])
                close = difflib.get_close_matches(part, list(fields), n=1)
                hint = f" (did you mean '{'.'.join([*parts[:depth], close[0]])}'?)" if close else ""
                raise MedsegConfigError(f"{option} {dotted}={value}: unknown key '{part}'{f' in {where!r}' if where else ''}{hint}")
            annotation = fields[part].annotation
            if _is_mapping(annotation):
                break
            current = _section(annotation)


def pipeline_overrides(sets: dict[str, Any] | None = None, data: Path | None = None) -> dict[str, Any]:
    """The overrides of ``--set`` (dotted key -> value) and ``--data PATH`` (the dataset instead of the YAML's
    dataset or phantom; a Decathlon ``dataset.json`` or an ``imagesTr/`` + ``labelsTr/`` folder), keys checked."""
    overrides = dict(sets or {})
    check_override_keys(overrides)
    if data is not None:
        if not data.exists():
            raise MedsegConfigError(f"--data {data}: no such file or folder")
        overrides |= {"data.dataset": str(data.resolve()), "data.synthetic": None}
    return overrides


def train_pipeline(
    config: str | Path,
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
    """Train the pipeline ``config`` into the run folder ``out`` (every stage of a staged pipeline, or ``stage``).

    Returns the run's summary (``summary["model"]``: the exported model package).

    A run folder without a checkpoint is started afresh; a start that fails (or is interrupted) before the
    first checkpoint removes the folder it created.

    Raises:
        MedsegError: an invalid pipeline or override, a run folder in the way, missing data (one line).
    """
    created = not Path(out).exists()
    try:
        if is_staged(config):
            return run_stages(config, out, stage, device=device, resume=resume, epochs=epochs, force=force, progress=progress, overrides=overrides)
        if stage is not None:
            raise MedsegConfigError(f"--stage: {config} is not a staged pipeline (it has no 'stages:' list)")
        pipeline = load_pipeline(config, overrides)
        return create_trainer(pipeline, out, device=device, resume=resume, epochs=epochs, force=force, progress=progress).fit()
    except BaseException:
        if created and distributed.is_main() and Path(out).is_dir() and not has_checkpoint(Path(out)):
            shutil.rmtree(out, ignore_errors=True)  # a failed start leaves no folder behind
        raise
    finally:
        distributed.finish()


__all__ = ["check_override_keys", "pipeline_overrides", "train_pipeline"]
