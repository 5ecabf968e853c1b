"""The ROI cascade: box from a localiser package, crop in the input grid, fine model, paste back; geometry kept."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from torch import nn

from medseg.config import NetworkConfig, PreprocessConfig, RoiConfig
from medseg.data.synthetic import save_nifti
from medseg.model.package import ModelManifest, load_model_package, save_model_package
from medseg.errors import MedsegModelError
from medseg.inference.cascade import cropped_geometry
from medseg.inference.batch import predict_to_files
from medseg.inference.outputs import CaseTargets
from medseg.inference.predictor import Predictor
from medseg.io.geometry import Geometry, reorient
from medseg.networks.registry import NETWORKS, register_network
from medseg.transforms.roi import CropToLabelRoid, largest_component, roi_box


class Threshold(nn.Module):
    """Label 1 where the intensity exceeds ``threshold`` (a fixed per-voxel classifier)."""

    def __init__(self, threshold: float = 0.0) -> None:
        super().__init__()
        self.threshold = nn.Parameter(torch.tensor(float(threshold)), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x[:, :1] - self.threshold
        return torch.cat([-z, z], dim=1)


def test_roi_box_margin_clipping_and_largest_component() -> None:
    mask = np.zeros((20, 20, 10), bool)
    mask[5:9, 6:10, 4:6] = True
    mask[18, 18, 9] = True  # a speck
    assert roi_box(mask, (1.0, 2.0, 3.0), (2.0, 2.0, 3.5)) == (slice(3, 11), slice(5, 11), slice(2, 8))
    assert roi_box(mask, (1.0, 1.0, 1.0), (0, 0, 0), keep_largest=False) == (slice(5, 19), slice(6, 19), slice(4, 10))
    assert roi_box(mask, (1.0, 1.0, 1.0), (50, 50, 50)) == (slice(0, 20), slice(0, 20), slice(0, 10))
    assert roi_box(np.zeros((3, 3, 3), bool), (1, 1, 1), (1, 1, 1)) is None
    assert largest_component(mask).sum() == 32


def test_training_crop_follows_the_label_and_shifts_the_affine() -> None:
    affine = torch.tensor([[0.0, -2.0, 0.0, 10.0], [1.5, 0.0, 0.0, -4.0], [0.0, 0.0, 3.0, 7.0], [0, 0, 0, 1.0]])
    label = torch.zeros(1, 12, 10, 8)
    label[0, 4:6, 3:5, 2:4] = 2
    image = MetaTensor(torch.arange(960.0).view(1, 12, 10, 8), affine=affine)
    out = CropToLabelRoid(["image", "label"], "label", RoiConfig(localiser="x", labels=[1, 2], margin_mm=3.0))(
        {"image": image, "label": MetaTensor(label, affine=affine)}
    )
    # spacing per voxel axis is (1.5, 2, 3) mm: margins of 2, 2 and 1 voxels
    assert out["image"].shape == (1, 6, 6, 4) and out["label"].shape == (1, 6, 6, 4)
    torch.testing.assert_close(out["image"].as_tensor(), image.as_tensor()[:, 2:8, 1:7, 1:5])
    torch.testing.assert_close(out["image"].affine.double(), (affine.double() @ torch.tensor([[1, 0, 0, 2], [0, 1, 0, 1], [0, 0, 1, 1], [0, 0, 0, 1.0]]).double()))


def test_cropped_geometry_maps_the_box_corner() -> None:
    affine = np.array([[0.0, -0.8, 0.1, 20.0], [0.9, 0.0, 0.0, -5.0], [0.0, 0.0, 2.5, 3.0], [0, 0, 0, 1]])
    g = Geometry((30, 40, 20), affine)
    box = (slice(3, 13), slice(5, 25), slice(2, 20))
    sub = cropped_geometry(g, box)
    assert sub.shape == (10, 20, 18)
    np.testing.assert_allclose(sub.affine @ [1, 2, 3, 1], affine @ [4, 7, 5, 1])
    np.testing.assert_allclose(sub.spacing, g.spacing)


@pytest.fixture
def cascade_package(tmp_path: Path):
    register_network("test_threshold")(Threshold)

    def package(name: str, threshold: float, roi: RoiConfig | None = None, attachments: dict | None = None) -> Path:
        manifest = ModelManifest(
            name=name,
            network=NetworkConfig(name="test_threshold", kwargs={"threshold": threshold}),
            labels={0: "background", 1: "organ"},
            modalities=["CT"],
            preprocess=PreprocessConfig(intensity="none"),
            patch_size=(16, 16, 16),
            roi=roi,
        )
        return save_model_package(tmp_path / name, Threshold(threshold), manifest, attachments=attachments)

    localiser = package("localiser", 50.0)
    roi = RoiConfig(localiser="localiser", labels=[1], margin_mm=4.0, largest_component=True)
    yield package("cascade", 10.0, roi, {"localiser": localiser})
    NETWORKS.remove("test_threshold")


def _scene() -> tuple[np.ndarray, np.ndarray]:
    """Organ (100) with a faint rim (30) in one place, a small bright decoy (100) and faint tissue (30) elsewhere."""
    image = np.zeros((40, 32, 24), np.float32)
    image[8:20, 6:18, 5:15] = 30.0
    image[10:18, 8:16, 7:13] = 100.0
    image[30:33, 25:28, 18:21] = 100.0
    image[34:38, 2:6, 2:6] = 30.0
    affine = np.diag([1.5, 2.0, 4.0, 1.0])
    affine[:3, 3] = (-30.0, 20.0, -40.0)
    return image, affine


def test_cascade_predicts_inside_the_localised_box_in_the_input_geometry(tmp_path: Path, cascade_package: Path) -> None:
    package = load_model_package(cascade_package)
    assert package.localiser is not None and (cascade_package / "localiser" / "medseg.json").is_file()
    predictor = Predictor(package, torch.device("cpu"))
    image, affine = _scene()
    rotation = np.eye(4)
    rotation[:2, :2] = [[np.cos(0.4), -np.sin(0.4)], [np.sin(0.4), np.cos(0.4)]]
    variants = {code: reorient(image, affine, code) for code in ("RAS", "LPS", "PSR")}
    variants["oblique"] = (image, rotation @ affine)
    for name, (array, aff) in variants.items():
        src = save_nifti(tmp_path / f"{name}.nii.gz", array, aff)
        out = tmp_path / f"{name}_mask.nii.gz"
        result = predict_to_files(predictor, [src], CaseTargets(out))
        written = nib.load(str(out))
        np.testing.assert_allclose(written.affine, nib.load(str(src)).affine, atol=1e-5)
        spacing = np.linalg.norm(aff[:3, :3], axis=0)
        box = roi_box(array > 50, spacing, (4.0, 4.0, 4.0))
        inside = np.zeros(array.shape, bool)
        inside[box] = True
        expected = ((array > 10) & inside).astype(np.uint8)  # the decoy and the far tissue are outside the box
        np.testing.assert_array_equal(np.asarray(written.dataobj), expected, err_msg=name)
        assert result.info["roi_box"] == [[s.start, s.stop] for s in box]
        assert expected.sum() < (array > 10).sum()


def test_cascade_without_a_region_predicts_the_whole_image(tmp_path: Path, cascade_package: Path) -> None:
    predictor = Predictor(load_model_package(cascade_package), torch.device("cpu"))
    image = np.zeros((16, 16, 8), np.float32)
    image[2:5, 2:5, 2:5] = 30.0  # nothing above the localiser's threshold
    result = predictor.predict_files([save_nifti(tmp_path / "faint.nii.gz", image, np.eye(4))])
    assert result.info["roi_box"] is None
    np.testing.assert_array_equal(result.labels, (image > 10).astype(np.uint8))


def test_localiser_must_live_inside_the_package(tmp_path: Path, cascade_package: Path) -> None:
    manifest = (cascade_package / "medseg.json").read_text().replace('"localiser": "localiser"', '"localiser": "../elsewhere"')
    (cascade_package / "medseg.json").write_text(manifest)
    with pytest.raises(MedsegModelError, match="subfolder"):
        load_model_package(cascade_package)
