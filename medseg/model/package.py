"""Model packages: a folder with ``model.safetensors`` (weights only) and ``medseg.json`` (everything else).

No pickle anywhere: the network is rebuilt from the registry by name and kwargs, then the safetensors
weights are loaded strictly. A package that does not fit its network is a one-line
:class:`~medseg.errors.MedsegModelError`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

from medseg._version import __version__
from medseg.config import (
    InferenceConfig,
    NetworkConfig,
    OutputOptions,
    OutputSection,
    PreprocessConfig,
    RoiConfig,
    Strict,
    format_validation_error,
)
from medseg.errors import MedsegConfigError, MedsegModelError
from medseg.io.atomic import atomic_dir, write_json
from medseg.model.domain import TrainingData
from medseg.model.heads import OutputHead, check_network, create_head
from medseg.networks import create_network
from medseg.networks.blocks.slicewise import SliceWise
from medseg.networks.registry import core_network

MANIFEST, WEIGHTS = "medseg.json", "model.safetensors"
FORMAT = "medseg-model/1"


class SegmentStyle(Strict):
    """How one label is shown and coded in DICOM SEG outputs (optional ``segments`` of ``medseg.json``).

    ``color`` is RGB 0-255 (default: the preview palette); ``category``/``type`` are coded concepts
    ``[code value, coding scheme, meaning]`` such as ``["52988006", "SCT", "Lesion"]`` (default: SCT Tissue).
    """

    color: tuple[int, int, int] | None = None
    category: tuple[str, str, str] | None = None
    type: tuple[str, str, str] | None = None


class ModelManifest(Strict):
    """Contents of ``medseg.json``."""

    format: str = FORMAT
    name: str
    medseg_version: str = __version__
    network: NetworkConfig
    #: the output head and its options (a discriminated union by ``kind``, see :mod:`medseg.model.heads`)
    output: OutputSection = Field(default_factory=OutputOptions, validate_default=True)
    labels: dict[int, str]
    modalities: list[str]
    preprocess: PreprocessConfig
    patch_size: tuple[int, int, int]
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    training: dict[str, Any] = Field(default_factory=dict)
    #: what the model was trained on (modalities, voxel sizes, intensity percentiles); ``predict`` warns outside it
    training_data: TrainingData | None = None
    #: cascade: ``roi.localiser`` is a package folder inside this one (see :mod:`medseg.inference.cascade`)
    roi: RoiConfig | None = None
    segments: dict[int, SegmentStyle] = Field(default_factory=dict)


def build_network(config: NetworkConfig) -> nn.Module:
    """Registry network from a config, wrapped in :class:`SliceWise` when ``slice_axis`` is set."""
    net = create_network(config.name, **config.kwargs)
    return SliceWise(net, config.slice_axis) if config.slice_axis is not None else net


@dataclass
class ModelPackage:
    """A loaded model package: manifest, network (eval mode) and output head."""

    path: Path
    manifest: ModelManifest
    network: nn.Module
    head: OutputHead
    #: the cascade's localiser package (``manifest.roi``), loaded from its subfolder
    localiser: ModelPackage | None = None

    @property
    def weights_sha256(self) -> str:
        return sha256_file(self.path / WEIGHTS)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_model_package(
    path: str | Path, network: nn.Module, manifest: ModelManifest, force: bool = False, attachments: dict[str, Path] | None = None
) -> Path:
    """Write ``network``'s weights and ``manifest`` into the folder ``path`` (atomically, as a whole).

    ``attachments``: folders copied in as named subfolders (a cascade's localiser package), so the package
    stays one self-contained folder.
    """
    path = Path(path)
    manifest.training.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    with atomic_dir(path, force=force) as tmp:
        save_model(core_network(network), str(tmp / WEIGHTS), metadata={"format": FORMAT, "network": manifest.network.name})
        write_json(tmp / MANIFEST, manifest.model_dump(mode="json"))
        for name, folder in (attachments or {}).items():
            shutil.copytree(folder, tmp / name)
    return path


def read_manifest(path: str | Path) -> ModelManifest:
    """Validate ``medseg.json`` of a package folder."""
    path = Path(path)
    if not path.exists():
        raise MedsegModelError(f"{path}: model package not found")
    if not path.is_dir():
        raise MedsegModelError(f"{path}: a model package is a folder with {MANIFEST} and {WEIGHTS}")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise MedsegModelError(f"{path}: not a model package ({MANIFEST} is missing)")
    try:
        raw = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MedsegModelError(f"{manifest_path}: not valid JSON ({exc})") from exc
    try:
        manifest = ModelManifest.model_validate(raw)
    except ValidationError as exc:
        raise MedsegModelError(format_validation_error(exc, ModelManifest, str(manifest_path))) from exc
    except MedsegConfigError as exc:
        raise MedsegModelError(f"{manifest_path}: {exc}") from exc
    if manifest.format != FORMAT:
        raise MedsegModelError(f"{manifest_path}: unsupported package format '{manifest.format}' (expected {FORMAT})")
    return manifest


def load_model_package(path: str | Path, device: str | torch.device = "cpu") -> ModelPackage:
    """Rebuild the network from the registry and load its safetensors weights (strict)."""
    path = Path(path)
    manifest = read_manifest(path)
    weights = path / WEIGHTS
    if not weights.is_file():
        raise MedsegModelError(f"{path}: {WEIGHTS} is missing")
    try:
        network = build_network(manifest.network)
    except (MedsegConfigError, ValueError, TypeError) as exc:
        raise MedsegModelError(f"{path}: cannot build network '{manifest.network.name}': {exc}") from exc
    try:
        load_model(core_network(network), str(weights), strict=True, device=str(device))
    except (RuntimeError, SafetensorError, OSError) as exc:
        detail = " ".join(str(exc).split())[:300]
        raise MedsegModelError(f"{weights}: weights do not match network '{manifest.network.name}' ({detail})") from exc
    network.to(device).eval()
    try:
        head = create_head(manifest.output, manifest.labels)
        check_network(head, network)
    except (TypeError, MedsegConfigError) as exc:
        raise MedsegModelError(f"{path}: {exc}") from exc
    localiser = None
    if manifest.roi is not None:
        if Path(manifest.roi.localiser).is_absolute() or ".." in Path(manifest.roi.localiser).parts:
            raise MedsegModelError(f"{path}: roi.localiser must be a subfolder of the package, got '{manifest.roi.localiser}'")
        localiser = load_model_package(path / manifest.roi.localiser, device)
    return ModelPackage(path, manifest, network, head, localiser)


def describe(package: ModelPackage) -> dict[str, Any]:
    """Short JSON-able description (reports, ``medseg selfcheck``)."""
    m = package.manifest
    return {
        "path": str(package.path),
        "name": m.name,
        "network": m.network.name,
        "labels": {str(k): v for k, v in m.labels.items()},
        "modalities": m.modalities,
        "medseg_version": m.medseg_version,
        "weights_sha256": package.weights_sha256,
    }


__all__ = [
    "MANIFEST",
    "WEIGHTS",
    "ModelManifest",
    "ModelPackage",
    "SegmentStyle",
    "build_network",
    "core_network",
    "describe",
    "load_model_package",
    "read_manifest",
    "save_model_package",
    "sha256_file",
]
