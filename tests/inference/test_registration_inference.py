"""Registration inference in physical space: identity, translations in mm on anisotropic non-RAS grids,
and the written displacement field reproduces our moved image through SimpleITK."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from torch import nn

from medseg.config import NetworkConfig, PreprocessConfig
from medseg.model.package import ModelManifest, ModelPackage
from medseg.errors import MedsegModelError
from medseg.model.heads import create_head
from medseg.inference.registration import Registrar, field_on_grid, folding_on_grid, warp_volume
from medseg.io import Geometry, read_image, write_image
from medseg.io.geometry import reorient
from medseg.networks.blocks.registration import identity_grid


def _geometry(shape, spacing, code, origin=(3.0, -7.0, 11.0)) -> Geometry:
    """An anisotropic grid stored in orientation ``code`` (same anatomy box, different voxel axes)."""
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    array, affine = reorient(np.zeros(shape, np.float32), affine, code)
    return Geometry(array.shape, affine)


def _linear_image(geometry: Geometry, coef=(0.3, -0.2, 0.5), offset=10.0) -> np.ndarray:
    """Intensity = a linear function of the RAS world position: trilinear interpolation is exact for it."""
    ijk = identity_grid(geometry.shape).numpy().reshape(3, -1)
    world = geometry.affine[:3, :3] @ ijk + geometry.affine[:3, 3:4]
    return (np.asarray(coef) @ world + offset).reshape(geometry.shape).astype(np.float32)


def _world(geometry: Geometry) -> np.ndarray:
    ijk = identity_grid(geometry.shape).numpy().reshape(3, -1)
    return (geometry.affine[:3, :3] @ ijk + geometry.affine[:3, 3:4]).reshape(3, *geometry.shape)


FIXED = _geometry((20, 22, 14), (1.5, 2.0, 3.0), "LPS")
MOVING = _geometry((18, 26, 20), (2.5, 1.2, 1.8), "PSR", origin=(0.0, -5.0, 8.0))
NET_AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
NET_AFFINE[:3, 3] = (-20.0, -60.0, -15.0)


def test_zero_field_is_the_identity() -> None:
    moving = torch.rand(1, *FIXED.shape)
    zero = field_on_grid(torch.zeros(3, 30, 30, 30), NET_AFFINE, FIXED)
    assert zero.abs().max() == 0
    torch.testing.assert_close(warp_volume(moving, FIXED.affine, zero, FIXED), moving)  # same grid: exact
    labels = torch.randint(0, 4, (1, *FIXED.shape)).float()
    torch.testing.assert_close(warp_volume(labels, FIXED.affine, zero, FIXED, labels=True), labels)


def test_a_translation_moves_the_image_by_that_many_millimetres_in_world_space() -> None:
    t_vox = torch.tensor([1.5, -2.0, 0.5])
    flow = t_vox.view(3, 1, 1, 1).expand(3, 30, 30, 30)
    displacement = field_on_grid(flow, NET_AFFINE, FIXED)
    expected_mm = torch.tensor([3.0, -4.0, 1.0])  # 2 mm network voxels, RAS
    torch.testing.assert_close(displacement, expected_mm.view(3, 1, 1, 1).expand_as(displacement))
    moving = torch.from_numpy(_linear_image(MOVING))[None]
    moved = warp_volume(moving, MOVING.affine, displacement, FIXED)[0].numpy()
    target_world = _world(FIXED) + expected_mm.numpy().reshape(3, 1, 1, 1)
    # where x + d falls inside the moving image, moved(x) = moving(x + d), computed analytically
    inside = _inside(target_world, MOVING)
    expected = np.tensordot(np.asarray((0.3, -0.2, 0.5)), target_world, axes=1) + 10.0
    assert inside.mean() > 0.3
    np.testing.assert_allclose(moved[inside], expected[inside], atol=1e-3)
    assert folding_on_grid(displacement, FIXED) == 0.0


def _inside(world: np.ndarray, geometry: Geometry, margin: float = 0.0) -> np.ndarray:
    """Where world points fall inside ``geometry``'s voxel centres, ``margin`` voxels in from the faces."""
    inverse = np.linalg.inv(geometry.affine)
    ijk = np.tensordot(inverse[:3, :3], world, axes=1) + inverse[:3, 3].reshape(3, 1, 1, 1)
    top = np.asarray(geometry.shape).reshape(3, 1, 1, 1) - 1 - margin
    return np.all((ijk >= margin) & (ijk <= top), axis=0)


class SmoothField(nn.Module):
    """A stand-in registration network: a fixed smooth field (network voxels), its negation as reverse."""

    size_divisor = 4

    def __init__(self, amplitude: float = 1.5, translation: tuple[float, float, float] | None = None) -> None:
        super().__init__()
        self.amplitude = amplitude
        self.translation = translation

    def forward(self, fixed: torch.Tensor, moving: torch.Tensor, bidirectional: bool | None = None) -> dict[str, torch.Tensor]:
        shape = fixed.shape[2:]
        assert all(s % 4 == 0 for s in shape)
        if self.translation is not None:
            flow = torch.tensor(self.translation).view(1, 3, 1, 1, 1).expand(1, 3, *shape).clone()
        else:
            grid = identity_grid(shape)
            flow = self.amplitude * torch.stack([torch.sin(grid[1] / 3), torch.cos(grid[2] / 4), torch.sin(grid[0] / 5)])[None]
        out = {"flow": flow, "moved": moving}
        if bidirectional:
            out["flow_reverse"] = -flow
        return out


def _package(tmp_path: Path, network: nn.Module, spacing=(2.0, 2.0, 2.0), kind: str = "displacement") -> ModelPackage:
    manifest = ModelManifest(
        name="stand-in", network=NetworkConfig(name="stand-in"), output={"kind": kind},
        labels={0: "background", 1: "a", 2: "b"}, modalities=["MRI"],
        preprocess=PreprocessConfig(intensity="minmax", target_spacing=spacing), patch_size=(8, 8, 8),
    )
    return ModelPackage(tmp_path, manifest, network, create_head(manifest.output, manifest.labels))


def _write_pair(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    fixed = write_image(tmp_path / "fixed.nii.gz", _linear_image(FIXED, (0.1, 0.2, -0.1)), FIXED, "image")
    moving = write_image(tmp_path / "moving.nii.gz", _linear_image(MOVING), MOVING, "image")
    block = np.zeros(MOVING.shape, np.uint8)
    block[4:12, 6:20, 5:15] = 1
    block[6:9, 8:12, 7:12] = 2
    moving_labels = write_image(tmp_path / "moving_labels.nii.gz", block, MOVING, "label")
    fixed_labels = write_image(tmp_path / "fixed_labels.nii.gz", np.zeros(FIXED.shape, np.uint8), FIXED, "label")
    return fixed, moving, moving_labels, fixed_labels


def test_registrar_keeps_the_fixed_geometry_and_moves_by_the_network_translation(tmp_path: Path) -> None:
    fixed, moving, moving_labels, fixed_labels = _write_pair(tmp_path)
    registrar = Registrar(_package(tmp_path, SmoothField(translation=(1.0, -0.5, 2.0)), spacing=(2.0, 3.0, 1.0)), torch.device("cpu"))
    result = registrar.register_files(fixed, moving, moving_labels, fixed_labels, inverse=True)
    assert result.moved.shape == FIXED.shape and result.displacement.shape == (*FIXED.shape, 3)
    # network grid: RAS at (2, 3, 1) mm -> (2, -1.5, 2) mm in RAS, i.e. (-2, 1.5, 2) in ITK's LPS
    np.testing.assert_allclose(result.displacement, np.broadcast_to([-2.0, 1.5, 2.0], result.displacement.shape), atol=1e-5)
    np.testing.assert_allclose(result.inverse_displacement, np.broadcast_to([2.0, -1.5, -2.0], (*MOVING.shape, 3)), atol=1e-5)
    target_world = _world(FIXED) + np.array([2.0, -1.5, 2.0]).reshape(3, 1, 1, 1)
    inside = _inside(target_world, MOVING)
    expected = np.tensordot(np.asarray((0.3, -0.2, 0.5)), target_world, axes=1) + 10.0
    np.testing.assert_allclose(result.moved[inside], expected[inside], atol=1e-3)  # original intensities
    assert result.moved_labels is not None and result.moved_labels.dtype == np.uint8
    assert set(np.unique(result.moved_labels)) <= {0, 1, 2}
    assert result.qa["folding_fraction"] == 0.0 and result.qa["inverse_consistency_mm"] == pytest.approx(0.0, abs=1e-4)
    assert set(result.qa["dice_after"]) == {"a", "b"}  # labels named by the package


def test_simpleitk_displacement_field_transform_reproduces_our_moved_image(tmp_path: Path) -> None:
    fixed, moving, moving_labels, _ = _write_pair(tmp_path)
    registrar = Registrar(_package(tmp_path, SmoothField(amplitude=1.5)), torch.device("cpu"))
    result = registrar.register_files(fixed, moving, moving_labels)
    assert np.abs(result.displacement).max() > 1.0  # a real, non-uniform field
    for suffix in (".nii.gz", ".mha"):
        warp = write_image(tmp_path / f"warp{suffix}", result.displacement, FIXED, "displacement")
        field_image = sitk.ReadImage(str(warp))
        assert field_image.GetNumberOfComponentsPerPixel() == 3 and field_image.GetDimension() == 3
        transform = sitk.DisplacementFieldTransform(sitk.Cast(field_image, sitk.sitkVectorFloat64))
        reference = sitk.ReadImage(str(fixed))
        moved_itk = sitk.Resample(sitk.ReadImage(str(moving)), reference, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        moved_itk = np.transpose(sitk.GetArrayFromImage(moved_itk), (2, 1, 0))
        np.testing.assert_allclose(moved_itk, result.moved, atol=2e-3)  # edges included
        assert (result.moved == 0).mean() > 0.05  # the field does reach outside the moving image
        labels_itk = sitk.Resample(sitk.ReadImage(str(moving_labels)), reference, transform, sitk.sitkNearestNeighbor, 0)
        agree = np.transpose(sitk.GetArrayFromImage(labels_itk), (2, 1, 0)) == result.moved_labels
        assert agree.mean() > 0.999  # nearest neighbour may break exact ties differently
    # the NIfTI field keeps the fixed image's header geometry
    _, geometry = read_image(fixed)
    assert geometry.mismatch(Geometry(FIXED.shape, sitk_affine(tmp_path / "warp.nii.gz"))) is None


def sitk_affine(path: Path) -> np.ndarray:
    import nibabel as nib

    img = nib.load(str(path))
    assert img.shape == (*FIXED.shape, 1, 3) and img.header.get_intent()[0] == "vector"
    return img.affine


def test_a_segmentation_package_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MedsegModelError, match="not a registration model"):
        Registrar(_package(tmp_path, SmoothField(), kind="labels"), torch.device("cpu"))


def test_the_registrar_moves_images_as_the_network_does_during_training(tmp_path: Path) -> None:
    """Same grid, no intensity change: the file-level moved image equals the network's own ``moved``."""
    from medseg.networks import create_network

    torch.manual_seed(0)
    network = create_network("voxelmorph", encoder_channels=(4, 8), decoder_channels=(8, 8, 4), integration_steps=0)
    with torch.no_grad():
        network.unet.net[1].final_conv_out.conv.weight.normal_(0, 0.5)  # a visible, non-uniform field
    geometry = Geometry((16, 20, 12), np.diag([2.0, 2.0, 2.0, 1.0]))
    rng = np.random.default_rng(0)
    arrays = [rng.random(geometry.shape).astype(np.float32) for _ in range(2)]
    paths = [write_image(tmp_path / f"{n}.nii.gz", a, geometry, "image") for n, a in zip(("fixed", "moving"), arrays)]
    package = _package(tmp_path, network.eval(), spacing=(2.0, 2.0, 2.0))
    package.manifest.preprocess.intensity = "none"
    package.manifest.patch_size = (16, 20, 12)
    result = Registrar(package, torch.device("cpu")).register_files(*paths)
    with torch.no_grad():
        out = network(*(torch.from_numpy(a)[None, None] for a in arrays))
    assert out["flow"].abs().max() > 0.5
    inside = _inside(_world(geometry) + np.moveaxis(result.displacement * [-1.0, -1.0, 1.0], -1, 0), geometry, margin=0.0)
    np.testing.assert_allclose(result.moved[inside], out["moved"][0, 0].numpy()[inside], atol=1e-4)
