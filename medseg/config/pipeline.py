"""Pydantic schemas for pipeline YAML: code never reads an unvalidated dict.

An unknown key or a wrong type is a one-line :class:`MedsegConfigError` naming the key, e.g.
``demo.yaml: train.epoch: unknown key (did you mean 'epochs'?)``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from medseg.config.base import Strict, apply_overrides, format_validation_error, read_yaml_mapping
from medseg.config.sections import (
    DataConfig,
    InferenceConfig,
    LossConfig,
    NetworkConfig,
    OutputOptions,
    OutputSection,
    PreprocessConfig,
    RoiConfig,
    TrainConfig,
)
from medseg.config.semi_supervised import SemiSupervisedConfig
from medseg.errors import MedsegConfigError


class PipelineConfig(Strict):
    """A whole pipeline YAML."""

    name: str
    description: str = ""
    task: str = "segmentation"
    seed: int = 0
    deterministic: bool = False
    data: DataConfig
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    network: NetworkConfig
    #: the output head and its typed options (see :class:`~medseg.config.sections.OutputOptions`)
    output: OutputSection = Field(default_factory=OutputOptions, validate_default=True)
    loss: LossConfig = Field(default_factory=LossConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    roi: RoiConfig | None = None
    semi_supervised: SemiSupervisedConfig | None = None

    #: folder of the YAML file, for relative dataset paths (not part of the YAML)
    base_dir: Path | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _semi_supervised_keys(self) -> PipelineConfig:
        if self.task != "semi_supervised" and (self.semi_supervised is not None or self.data.unlabelled is not None):
            raise ValueError("semi_supervised and data.unlabelled need task: semi_supervised")
        if self.task == "semi_supervised" and (self.roi is not None or self.network.slice_context):
            raise ValueError("task: semi_supervised does not support roi or network.slice_context yet")
        return self

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() or self.base_dir is None else (self.base_dir / p)

    def sha256(self) -> str:
        """Hash of the validated configuration (recorded in model packages)."""
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def load_pipeline(path: str | Path, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Read and validate a pipeline YAML.

    Raises:
        MedsegConfigError: missing file, YAML syntax error, unknown key or wrong type (one line).
    """
    path = Path(path)
    raw = read_yaml_mapping(path)
    if "stages" in raw:
        raise MedsegConfigError(f"{path}: is a staged pipeline ('stages:'): train it with `medseg train` (see medseg.config.stages)")
    return validate_pipeline(apply_overrides(raw, overrides or {}), source=str(path), base_dir=path.parent)


def validate_pipeline(raw: dict[str, Any], source: str = "config", base_dir: Path | None = None) -> PipelineConfig:
    try:
        config = PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise MedsegConfigError(format_validation_error(exc, PipelineConfig, source)) from exc
    except MedsegConfigError as exc:  # a section validated by a registered model (output) names its key itself
        raise MedsegConfigError(f"{source}: {exc}") from exc
    config.base_dir = base_dir
    return config


def bundled_pipeline(name: str) -> Path:
    """Path of a pipeline YAML shipped with medseg (source checkout's ``pipelines/`` or the wheel's copy)."""
    here = Path(__file__).resolve().parents[1]  # medseg/
    for folder in (here.parent / "pipelines", here / "pipelines"):
        candidate = folder / f"{name}.yaml"
        if candidate.is_file():
            return candidate
    raise MedsegConfigError(f"no bundled pipeline named '{name}'")


__all__ = ["PipelineConfig", "bundled_pipeline", "load_pipeline", "validate_pipeline"]
