"""The geometry contract of the predictor: outputs have the input's shape, affine, codes and voxel size,
and the predicted mask lands on the same anatomy whatever the orientation, spacing or obliquity."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from medseg.config import NetworkConfig, PreprocessConfig
from medseg.data.synthetic import ct_phantom, save_nifti
from medseg.model.package import ModelManifest, load_model_package, save_model_package
from medseg.inference.batch import predict_to_files
from medseg.inference.outputs import CaseTargets
from medseg.inference.predictor import Predictor
from medseg.io.geometry import reorient
from medseg.metrics import dice
from medseg.networks.registry import NETWORKS, register_network

THRESHOLD_HU = 20.0


class VoxelThreshold(nn.Module):
    """A fixed per-voxel classifier: label 1 where the intensity exceeds a threshold (no learnt spatial bias)."""

    def __init__(self, threshold: float = THRESHOLD_HU) -> None:
        super().__init__()
        self.threshold = nn.Parameter(torch.tensor(float(threshold)), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x[:, :1] - self.threshold) * 0.5
        return torch.cat([-z, z], dim=1)


@pytest.fixture
def threshold_model(tmp_path: Path):
    register_network("test_voxel_threshold")(VoxelThreshold)

    def make(target_spacing: tuple[float, float, float] | None) -> Path:
        manifest = ModelManifest(
            name="threshold",
            network=NetworkConfig(name="test_voxel_threshold"),
            labels={0: "background", 1: "dense"},
            modalities=["CT"],
            preprocess=PreprocessConfig(intensity="none", target_spacing=target_spacing),
            patch_size=(16, 16, 16),
        )
        path = tmp_path / f"model_{target_spacing}"
        return save_model_package(path, VoxelThreshold(), manifest, force=True)

    yield make
    NETWORKS.remove("test_voxel_threshold")


def _rotation_z(degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    r = np.eye(4)
    r[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    return r


def _variants(image: np.ndarray, affine: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {code: reorient(image, affine, code) for code in ("RAS", "LPS", "LAS", "PSR")}
    out["oblique"] = (image, _rotation_z(25) @ affine)
    return out


def _assert_same_header(out: Path, src: Path) -> None:
    a, b = nib.load(str(out)), nib.load(str(src))
    assert a.shape == b.shape
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-5)
    np.testing.assert_allclose(a.header.get_zooms(), b.header.get_zooms(), atol=1e-6)
    assert int(a.header["qform_code"]) == int(b.header["qform_code"])
    assert int(a.header["sform_code"]) == int(b.header["sform_code"])
    np.testing.assert_allclose(a.header.get_qform(), b.header.get_qform(), atol=1e-5)
    assert a.get_data_dtype() == np.uint8


@pytest.mark.parametrize("target_spacing", [None, (3.0, 3.0, 3.0)])
def test_mask_lands_on_the_same_anatomy(tmp_path: Path, threshold_model, target_spacing) -> None:
    """Six storage conventions of one phantom (incl. oblique and 0.7x0.7x3 mm): the written mask equals the
    threshold of the input in its own grid (exactly without resampling, Dice > 0.95 with resampling)."""
    predictor = Predictor(load_model_package(threshold_model(target_spacing)), torch.device("cpu"))
    image, _, affine = ct_phantom(1)
    variants = _variants(image, affine)
    fine = np.diag([0.7, 0.7, 3.0, 1.0])
    fine[:3, 3] = affine[:3, 3]
    zoom = (affine[0, 0] / 0.7, affine[1, 1] / 0.7, affine[2, 2] / 3.0)
    from scipy import ndimage

    variants["aniso_0.7x0.7x3"] = (ndimage.zoom(image, zoom, order=1), fine)
    for name, (array, aff) in variants.items():
        src = save_nifti(tmp_path / f"{name}.nii.gz", array, aff)
        out = tmp_path / f"{name}_mask.nii.gz"
        predict_to_files(predictor, [src], CaseTargets(out))
        _assert_same_header(out, src)
        predicted = np.asarray(nib.load(str(out)).dataobj)
        expected = (array > THRESHOLD_HU).astype(np.uint8)
        if target_spacing is None:
            np.testing.assert_array_equal(predicted, expected, err_msg=name)
        else:
            assert dice(predicted, expected, [1])[1] > 0.95, name


def test_flipping_the_array_flips_the_prediction(tmp_path: Path, threshold_model) -> None:
    predictor = Predictor(load_model_package(threshold_model(None)), torch.device("cpu"))
    image, _, affine = ct_phantom(2)
    a = predictor.predict_files([save_nifti(tmp_path / "a.nii.gz", image, affine)]).labels
    for axis in range(3):
        flipped = np.ascontiguousarray(np.flip(image, axis))
        b = predictor.predict_files([save_nifti(tmp_path / f"f{axis}.nii.gz", flipped, affine)]).labels
        np.testing.assert_array_equal(b, np.flip(a, axis))


def test_trained_model_is_orientation_invariant(tmp_path: Path, tiny_model: Path) -> None:
    """The same anatomy stored as RAS, LPS, LAS or PSR gives the same mask (exactly, after re-orienting)."""
    predictor = Predictor(load_model_package(tiny_model), torch.device("cpu"))
    image, _, affine = ct_phantom(7)
    reference = None
    for code in ("RAS", "LPS", "LAS", "PSR"):
        array, aff = reorient(image, affine, code)
        src = save_nifti(tmp_path / f"{code}.nii.gz", array, aff)
        out = tmp_path / f"{code}_mask.nii.gz"
        result = predict_to_files(predictor, [src], CaseTargets(out, probabilities=tmp_path / f"{code}_p.nii.gz"))
        _assert_same_header(out, src)
        assert nib.load(str(tmp_path / f"{code}_p.nii.gz")).shape == (*array.shape, 3)
        assert result.probabilities is not None
        np.testing.assert_allclose(result.probabilities.sum(-1), 1.0, atol=1e-4)
        back, _ = reorient(result.labels, aff, "RAS")
        if reference is None:
            reference = back
        np.testing.assert_array_equal(back, reference, err_msg=code)
