"""medseg.model: the model package (safetensors weights + ``medseg.json`` manifest) and the output heads.

Floors: ``model`` imports networks, transforms, io and config, never ``inference`` or ``engine``.
"""

from __future__ import annotations

from medseg.model.heads import HEADS, OutputHead, create_head
from medseg.model.package import (
    MANIFEST,
    WEIGHTS,
    ModelManifest,
    ModelPackage,
    SegmentStyle,
    build_network,
    describe,
    load_model_package,
    read_manifest,
    save_model_package,
    sha256_file,
)

__all__ = [
    "HEADS",
    "MANIFEST",
    "WEIGHTS",
    "ModelManifest",
    "ModelPackage",
    "OutputHead",
    "SegmentStyle",
    "build_network",
    "create_head",
    "describe",
    "load_model_package",
    "read_manifest",
    "save_model_package",
    "sha256_file",
]
