"""Entropy maps: bounds, categorical vs per-channel, and higher on a blurred input than on a sharp one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from torch import nn

from medseg.config import InferenceConfig, NetworkConfig, PreprocessConfig
from medseg.model.package import ModelManifest, load_model_package, save_model_package
from medseg.inference.batch import RunContext, predict_case, targets_for_file
from medseg.inference.cases import single_case
from medseg.inference.predictor import Predictor
from medseg.inference.uncertainty import entropy_map, label_entropy
from medseg.io.geometry import Geometry
from medseg.io.image_io import read_image, write_image
from medseg.networks import registry


def test_entropy_bounds_and_kinds() -> None:
    p = np.zeros((2, 1, 1, 3), np.float32)
    p[0, 0, 0] = [1, 0, 0]
    p[1, 0, 0] = [1 / 3, 1 / 3, 1 / 3]
    h = entropy_map(p)
    assert h[0, 0, 0] == 0.0 and h[1, 0, 0] == pytest.approx(1.0)
    sig = np.full((1, 1, 1, 2), 0.5, np.float32)  # independent channels: mean binary entropy
    assert entropy_map(sig, categorical=False)[0, 0, 0] == pytest.approx(1.0)
    summary = label_entropy(h, np.array([[[0]], [[2]]]), {0: "bg", 1: "a", 2: "b"})
    assert summary["labels"]["1"] == {"name": "a", "voxels": 0, "mean_entropy": None}
    assert summary["labels"]["2"]["mean_entropy"] == pytest.approx(1.0) and summary["mean_entropy"] == pytest.approx(0.5)


class VoxelThreshold(nn.Module):
    """Two-class logits ``+-steepness * (x - 0.5)`` per voxel: confident far from 0.5, unsure near it."""

    def __init__(self, spatial_dims: int = 3, steepness: float = 12.0) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 2, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([-steepness, steepness]).view(2, 1, 1, 1, 1))
            self.conv.bias.copy_(torch.tensor([steepness / 2, -steepness / 2]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@pytest.fixture
def threshold_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A model package whose network thresholds intensities at 0.5 (registered for this test only)."""
    monkeypatch.setattr(registry.NETWORKS, "_entries", dict(registry.NETWORKS._entries))
    registry.register_network("test_voxel_threshold")(VoxelThreshold)
    manifest = ModelManifest(
        name="threshold", network=NetworkConfig(name="test_voxel_threshold", kwargs={}), labels={0: "background", 1: "block"},
        modalities=["MR"], preprocess=PreprocessConfig(intensity="none", target_spacing=(2.0, 2.0, 2.0)),
        patch_size=(16, 16, 16), inference=InferenceConfig(overlap=0.25, tta=True),
    )
    return save_model_package(tmp_path / "threshold", VoxelThreshold(), manifest)


def test_entropy_is_higher_on_a_blurred_input(threshold_model: Path, tmp_path: Path) -> None:
    image = np.zeros((30, 26, 14), np.float32)
    image[8:22, 6:20, 4:10] = 1.0
    affine = np.array([[0, -1.5, 0, 20], [1.2, 0, 0, -10], [0, 0, 3.0, 5], [0, 0, 0, 1]])  # rotated, anisotropic
    geometry = Geometry(image.shape, affine)
    context = RunContext(Predictor(load_model_package(threshold_model), torch.device("cpu")))
    means = {}
    for name, array in (("sharp", image), ("blurred", gaussian_filter(image, 2.0))):
        source = write_image(tmp_path / f"{name}.nii.gz", array, geometry, "image")
        targets = targets_for_file(tmp_path / f"{name}_labels.nii.gz", "nifti", report=True, uncertainty=True)
        predict_case(context, single_case([source]), targets)
        entropy, entropy_geometry = read_image(targets.uncertainty)
        assert entropy.shape == image.shape and geometry.mismatch(entropy_geometry) is None
        report = json.loads(targets.report.read_text())
        assert report["uncertainty"]["mean_entropy"] == pytest.approx(float(entropy.mean()), abs=1e-5)
        assert report["uncertainty"]["tta"] is True
        means[name] = report["uncertainty"]["labels"]["1"]["mean_entropy"], float(entropy.mean())
    assert means["blurred"][0] > means["sharp"][0] + 0.05  # inside the predicted block
    assert means["blurred"][1] > means["sharp"][1] + 0.02  # over the whole image


class ThreeClassRamp(nn.Module):
    """Three-class logits that vary smoothly with intensity (every voxel has a non-trivial softmax)."""

    def __init__(self, spatial_dims: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 3, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([-2.0, 0.5, 2.0]).view(3, 1, 1, 1, 1))
            self.conv.bias.copy_(torch.tensor([1.0, 0.0, -1.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@pytest.mark.parametrize("kind", ["liver_tumor", "labels"])
def test_softmax_heads_get_categorical_entropy(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every softmax head (labels, liver_tumor, nested_softmax) is categorical: the map is -sum p log p / log C."""
    monkeypatch.setattr(registry.NETWORKS, "_entries", dict(registry.NETWORKS._entries))
    registry.register_network("test_three_class_ramp")(ThreeClassRamp)
    manifest = ModelManifest(
        name="ramp", network=NetworkConfig(name="test_three_class_ramp", kwargs={}), labels={0: "background", 1: "liver", 2: "tumour"},
        modalities=["CT"], preprocess=PreprocessConfig(intensity="none"), patch_size=(8, 8, 8), output={"kind": kind, **({"thresholds": False} if kind == "liver_tumor" else {})},
    )
    package = load_model_package(save_model_package(tmp_path / "ramp", ThreeClassRamp(), manifest))
    assert package.head.categorical
    image = np.linspace(-1.5, 1.5, 12 * 10 * 8, dtype=np.float32).reshape(12, 10, 8)
    source = write_image(tmp_path / "ramp.nii.gz", image, Geometry(image.shape, np.diag([2.0, 2.0, 3.0, 1.0])), "image")
    predictor = Predictor(package, torch.device("cpu"))
    probabilities = predictor.predict_files([source], keep_probabilities=True).probabilities
    targets = targets_for_file(tmp_path / "ramp_labels.nii.gz", "nifti", report=False, uncertainty=True)
    predict_case(RunContext(predictor), single_case([source]), targets)
    entropy, _ = read_image(targets.uncertainty)
    expected = entropy_map(probabilities, categorical=True)
    np.testing.assert_allclose(entropy, expected, atol=1e-5)
    assert np.abs(entropy_map(probabilities, categorical=False) - expected).max() > 0.05  # the two definitions differ here
