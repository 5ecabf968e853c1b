"""Pydantic schemas for pipeline YAML: code never reads an unvalidated dict.

An unknown key or a wrong type is a one-line :class:`~medseg.errors.MedsegConfigError` naming the key, e.g.
``demo.yaml: train.epoch: unknown key (did you mean 'epochs'?)``.

The configuration is the lowest floor above ``errors`` and ``registry``, so everything that reads a pipeline can
import it. Its modules: :mod:`~medseg.config.base` (strict models, error lines, YAML, overrides),
:mod:`~medseg.config.sections` (the sections every pipeline shares; the ``output`` section is typed by the
registered heads' option models), :mod:`~medseg.config.pipeline` (the whole pipeline),
:mod:`~medseg.config.semi_supervised` (DSAIF's section) and :mod:`~medseg.config.stages` (staged YAMLs merged
into one validated pipeline per stage). Everything is re-exported here.
"""

from __future__ import annotations

from medseg.config.base import Strict, apply_overrides, format_validation_error, read_yaml_mapping
from medseg.config.pipeline import PipelineConfig, bundled_pipeline, load_pipeline, validate_pipeline
from medseg.config.sections import (
    OUTPUT_KINDS,
    AugmentConfig,
    DataConfig,
    InferenceConfig,
    InitConfig,
    LossConfig,
    NetworkConfig,
    OutputOptions,
    OutputSection,
    PreprocessConfig,
    RoiConfig,
    SyntheticDataConfig,
    TrainConfig,
    parse_output,
)
from medseg.config.semi_supervised import DsaifViewsConfig, NoiseViewsConfig, RampUpConfig, SemiSupervisedConfig, ViewsConfig

__all__ = [
    "OUTPUT_KINDS",
    "AugmentConfig",
    "DataConfig",
    "DsaifViewsConfig",
    "InferenceConfig",
    "InitConfig",
    "LossConfig",
    "NetworkConfig",
    "NoiseViewsConfig",
    "OutputOptions",
    "OutputSection",
    "PipelineConfig",
    "PreprocessConfig",
    "RampUpConfig",
    "RoiConfig",
    "SemiSupervisedConfig",
    "Strict",
    "SyntheticDataConfig",
    "TrainConfig",
    "ViewsConfig",
    "apply_overrides",
    "bundled_pipeline",
    "format_validation_error",
    "load_pipeline",
    "parse_output",
    "read_yaml_mapping",
    "validate_pipeline",
]
