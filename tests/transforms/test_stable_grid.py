"""The network grid of the spatial preset is a stable function of the input geometry (issue 13, item 3):
float32 rounding or a 1e-5 mm change of an oblique affine leaves its origin, direction and shape alone,
it equals MONAI's grid for exact affines, and MONAI's inverse still restores the input grid exactly."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Orientationd, Spacingd

from medseg.config import PreprocessConfig
from medseg.transforms.grid import network_grid
from medseg.transforms.presets import IMAGE, LABEL, spatial_transforms


def rotation(axis: int, degrees: float) -> np.ndarray:
    """4x4 rotation about world axis ``axis``."""
    a = np.deg2rad(degrees)
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(4)
    r[i, i], r[i, j], r[j, i], r[j, j] = np.cos(a), -np.sin(a), np.sin(a), np.cos(a)
    return r


def oblique_affine(spacing: tuple[float, float, float] = (0.78125, 0.78125, 2.5), origin=(-200.3, -180.7, -95.2)) -> np.ndarray:
    """An oblique CT-like affine: 20 degrees about x, -12 degrees about y."""
    base = np.diag([*spacing, 1.0])
    base[:3, 3] = origin
    return rotation(0, 20) @ rotation(1, -12) @ base


def perturbed(affine: np.ndarray, seed: int, size: float = 1e-5) -> np.ndarray:
    """``affine`` with every entry of its top three rows moved by up to ``size`` (mm)."""
    out = affine.copy()
    out[:3] += np.random.default_rng(seed).uniform(-size, size, (3, 4))
    return out


def preset_grid(affine: np.ndarray, shape: tuple[int, ...], spacing: tuple[float, float, float]) -> tuple[np.ndarray, tuple[int, ...]]:
    """Affine and shape of the network grid the preset makes (MONAI's lazy mode: nothing resampled)."""
    data = {IMAGE: MetaTensor(torch.zeros(1).expand(1, *shape), affine=torch.as_tensor(affine))}
    for t in spatial_transforms(PreprocessConfig(target_spacing=spacing)):
        lazy = copy.deepcopy(t)
        lazy.lazy = True
        data = lazy(data)
    image = data[IMAGE]
    return np.asarray(image.peek_pending_affine(), dtype=np.float64), tuple(int(s) for s in image.peek_pending_shape())


CASES = [  # (shape, input spacing, target spacing): 39 x 2.5 / 3 = 32.5 and 63 x 1 / 2 = 31.5 are half-integers
    ((96, 96, 40), (0.78125, 0.78125, 2.5), (1.5, 1.5, 3.0)),
    ((64, 48, 32), (1.0, 1.0, 1.0), (2.0, 2.0, 2.0)),
    ((50, 60, 20), (0.7, 0.9, 3.0), (1.0, 1.0, 1.0)),
]


@pytest.mark.parametrize("shape,spacing,target", CASES)
def test_oblique_grid_is_stable_under_float_noise(shape, spacing, target) -> None:
    affine = oblique_affine(spacing)
    ref_affine, ref_shape = preset_grid(affine, shape, target)
    variants = {"float32": affine.astype(np.float32).astype(np.float64)}
    variants.update({f"1e-5 mm #{s}": perturbed(affine, s) for s in range(4)})
    for name, variant in variants.items():
        grid_affine, grid_shape = preset_grid(variant, shape, target)
        assert grid_shape == ref_shape, name
        # origin and axes move by about as much as the input's voxel positions do (<= 1e-5 x the largest index)
        np.testing.assert_allclose(grid_affine[:3, 3], ref_affine[:3, 3], atol=5e-3, err_msg=name)
        np.testing.assert_allclose(grid_affine[:3, :3], ref_affine[:3, :3], atol=1e-4, err_msg=name)


@pytest.mark.parametrize("shape,spacing,target", CASES)
@pytest.mark.parametrize("oblique", [False, True])
def test_grid_equals_monai_for_exact_affines(shape, spacing, target, oblique) -> None:
    """Where MONAI's alignment test is not on a knife edge (orthogonal float64 affines) the grid is MONAI's."""
    affine = oblique_affine(spacing) if oblique else np.diag([*spacing, 1.0])
    spatial = [Orientationd(keys=[IMAGE], axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
               Spacingd(keys=[IMAGE], pixdim=target, mode="bilinear", padding_mode="border")]
    data = {IMAGE: MetaTensor(torch.zeros(1).expand(1, *shape), affine=torch.as_tensor(affine))}
    for t in spatial:
        t.lazy = True
        data = t(data)
    ours_affine, ours_shape = preset_grid(affine, shape, target)
    assert ours_shape == tuple(int(s) for s in data[IMAGE].peek_pending_shape())
    np.testing.assert_allclose(ours_affine, np.asarray(data[IMAGE].peek_pending_affine(), dtype=np.float64), atol=1e-9)


def test_grid_keeps_direction_and_spacing_and_starts_on_the_first_voxel() -> None:
    affine, shape, target = oblique_affine(), (30, 20, 10), (1.5, 1.5, 3.0)
    dst, dst_shape = network_grid(affine, shape, target)
    np.testing.assert_allclose(np.linalg.norm(dst[:3, :3], axis=0), target)
    np.testing.assert_allclose(dst[:3, :3] / target, affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0), atol=1e-12)
    np.testing.assert_allclose(dst[:3, 3], affine[:3, 3], atol=1e-9)
    # round(29 x 0.78125 / 1.5 + 1) = round(16.1); round(10.9); 9 x 2.5 / 3 + 1 = 8.5 rounds half to even
    assert dst_shape == (16, 11, 8)


def test_sheared_input_is_covered_from_its_minimum() -> None:
    """A real shear: the grid starts at the minimum of the input's voxel-centre box along each new axis."""
    affine = oblique_affine()
    affine[:3, :3] = affine[:3, :3] @ np.array([[1.0, 0.0, 0.1], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    shape = (30, 20, 10)
    dst, dst_shape = network_grid(affine, shape, (1.5, 1.5, 3.0))
    corners = np.array(np.meshgrid(*[(0, n - 1) for n in shape], indexing="ij")).reshape(3, -1)
    pts = np.linalg.solve(dst, affine @ np.vstack([corners, np.ones((1, 8))]))[:3]
    np.testing.assert_allclose(pts.min(1), 0.0, atol=1e-9)
    assert np.all(np.abs(pts.max(1) - (np.array(dst_shape) - 1)) <= 0.5 + 1e-9)


def test_inverse_restores_the_input_grid() -> None:
    """MONAI's inverse of the preset (image bilinear, label nearest) gives back the input's shape and affine."""
    affine = oblique_affine().astype(np.float32).astype(np.float64)
    shape = (40, 36, 12)
    image = MetaTensor(torch.rand(1, *shape), affine=torch.as_tensor(affine))
    label = MetaTensor((torch.rand(1, *shape) > 0.5).float(), affine=torch.as_tensor(affine))
    spatial = Compose(spatial_transforms(PreprocessConfig(target_spacing=(1.5, 1.5, 3.0)), [IMAGE], [LABEL]))
    out = spatial({IMAGE: image, LABEL: label})
    assert out[IMAGE].shape == out[LABEL].shape
    assert [op["class"] for op in out[IMAGE].applied_operations] == ["Orientation", "SpatialResample"]
    back = spatial.inverse(out)
    for key in (IMAGE, LABEL):
        assert tuple(back[key].shape[1:]) == shape
        np.testing.assert_allclose(np.asarray(back[key].affine, dtype=np.float64), affine, atol=1e-6)
