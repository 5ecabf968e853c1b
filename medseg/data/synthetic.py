"""Synthetic phantoms: random anatomy in physical (mm) space, written as real NIfTI files.

The building blocks (smooth random fields, irregular blobs, bias fields, re-orientation) are shared by
every method's phantom; :func:`ct_phantom` is the spine's CT-like case (body, organ, lesions, HU-like
intensities) used by the demo, the tests and the quickstart notebook.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

from medseg.data.registry import register_phantom
from medseg.io.atomic import write_json
from medseg.io.geometry import reorient

#: Orientation codes the CT dataset cycles through, so every dataset mixes conventions.
DEFAULT_ORIENTATIONS = ("RAS", "LPS", "LAS", "PSR")


def physical_grid(shape: Sequence[int], spacing: Sequence[float]) -> list[np.ndarray]:
    """Voxel-centre coordinates in mm, centred on the volume: one broadcastable array per axis."""
    axes = []
    for axis, (n, s) in enumerate(zip(shape, spacing)):
        coords = (np.arange(n, dtype=np.float32) - (n - 1) / 2.0) * float(s)
        view = [1] * len(shape)
        view[axis] = n
        axes.append(coords.reshape(view))
    return axes


def smooth_noise(shape: Sequence[int], sigma_vox: float | Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """Gaussian-smoothed white noise rescaled to unit standard deviation (float32)."""
    field = ndimage.gaussian_filter(rng.standard_normal(tuple(shape)).astype(np.float32), sigma_vox, mode="reflect")
    return (field / (field.std() + 1e-8)).astype(np.float32)


def irregular_blob(
    grid: Sequence[np.ndarray],
    centre_mm: Sequence[float] | np.ndarray,
    radii_mm: Sequence[float] | np.ndarray,
    rng: np.random.Generator,
    irregularity: float = 0.15,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """Boolean mask of an ellipsoid whose boundary is pushed in and out by a smooth random field.

    Args:
        grid: :func:`physical_grid` output.
        centre_mm / radii_mm: ellipsoid centre and semi-axes in mm.
        irregularity: relative amplitude of the boundary perturbation (0 = exact ellipsoid).
        spacing: voxel size, to make the perturbation smooth in mm rather than in voxels.
    """
    r2 = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre_mm, radii_mm))
    shape = np.broadcast_shapes(*(g.shape for g in grid))
    if irregularity > 0:
        sigma = [max(min(radii_mm) / 2.5 / s, 0.5) for s in spacing]
        r2 = r2 * (1.0 + irregularity * smooth_noise(shape, sigma, rng))
    return np.asarray(r2 <= 1.0)


def bias_field(
    shape: Sequence[int],
    rng: np.random.Generator,
    strength: float = 0.2,
    sigma_vox: float | Sequence[float] | None = None,
) -> np.ndarray:
    """Smooth multiplicative field around 1 (MRI-like intensity non-uniformity): ``exp(strength * noise)``
    with :func:`smooth_noise` of ``sigma_vox`` (default: a third of each axis)."""
    sigma = [max(n / 3.0, 1.0) for n in shape] if sigma_vox is None else sigma_vox
    return np.exp(strength * smooth_noise(shape, sigma, rng)).astype(np.float32)


def ras_affine(spacing: Sequence[float], shape: Sequence[int]) -> np.ndarray:
    """RAS affine with the given voxel size and the volume centred on the world origin."""
    affine = np.diag([*map(float, spacing), 1.0])
    affine[:3, 3] = -(np.asarray(shape) - 1) / 2.0 * np.asarray(spacing, dtype=float)
    return affine


@dataclass(frozen=True)
class CTPhantomSpec:
    """Parameters of :func:`ct_phantom` (sizes in mm, intensities in HU)."""

    field_of_view_mm: tuple[float, float, float] = (120.0, 120.0, 90.0)
    spacing_xy_mm: tuple[float, float] = (1.6, 2.2)
    spacing_z_mm: tuple[float, float] = (2.5, 3.5)
    lesions: tuple[int, int] = (1, 2)
    lesion_radius_mm: tuple[float, float] = (11.0, 17.0)
    noise_hu: float = 12.0


def ct_phantom(seed: int, spec: CTPhantomSpec = CTPhantomSpec()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One CT-like case in RAS layout: body, organ (label 1), lesions inside it (label 2).

    Random per case: voxel size (anisotropic, thicker slices), organ shape/position/density, lesion
    count/size/contrast (hypo- or hyperdense), noise. Intensities are HU-like: air -1000, fat -100,
    soft tissue 40, organ 70-90 (portal-venous enhancement), lesions organ -55..-40 or +40..+55, bone 400-700.

    Returns:
        ``(image float32 HU, label uint8, affine)`` with arrays ``(I, J, K)`` in RAS orientation.
    """
    rng = np.random.default_rng(seed)
    spacing = (rng.uniform(*spec.spacing_xy_mm), rng.uniform(*spec.spacing_xy_mm), rng.uniform(*spec.spacing_z_mm))
    shape = tuple(int(round(f / s)) for f, s in zip(spec.field_of_view_mm, spacing))
    grid = physical_grid(shape, spacing)
    x, y, _ = grid
    fov = np.asarray(spec.field_of_view_mm)

    image = np.full(shape, -1000.0, dtype=np.float32)
    body_r = (fov[0] * rng.uniform(0.40, 0.45), fov[1] * rng.uniform(0.33, 0.40))
    body = np.broadcast_to(((x / body_r[0]) ** 2 + (y / body_r[1]) ** 2) <= 1.0, shape)
    inner = np.broadcast_to(((x / (body_r[0] - 6)) ** 2 + (y / (body_r[1] - 6)) ** 2) <= 1.0, shape)
    image[body] = -100.0  # subcutaneous fat
    image[inner] = 40.0  # soft tissue
    spine = np.broadcast_to((x / 9.0) ** 2 + ((y + body_r[1] * 0.6) / 9.0) ** 2 <= 1.0, shape)
    image[spine] = rng.uniform(400, 700)

    organ_r = np.array([rng.uniform(28, 36), rng.uniform(23, 30), rng.uniform(24, 32)])
    organ_c = np.array([rng.uniform(-12, 12), rng.uniform(-5, 10), rng.uniform(-8, 8)])
    organ = irregular_blob(grid, organ_c, organ_r, rng, irregularity=0.25, spacing=spacing) & inner & ~spine
    organ_hu = rng.uniform(70, 90)  # contrast-enhanced parenchyma
    image[organ] = organ_hu
    label = organ.astype(np.uint8)

    for _ in range(rng.integers(spec.lesions[0], spec.lesions[1] + 1)):
        radius = rng.uniform(*spec.lesion_radius_mm)
        inside = np.argwhere(ndimage.binary_erosion(organ, iterations=2))
        if len(inside) == 0:
            break
        centre_vox = inside[rng.integers(len(inside))]
        centre = [float(g.reshape(-1)[i]) for g, i in zip(grid, centre_vox)]
        lesion = irregular_blob(grid, centre, (radius,) * 3, rng, irregularity=0.2, spacing=spacing) & organ
        contrast = rng.uniform(-55, -40) if rng.random() < 0.7 else rng.uniform(40, 55)
        image[lesion] = organ_hu + contrast
        label[lesion] = 2

    image += spec.noise_hu * smooth_noise(shape, 0.6, rng)
    image += rng.normal(0, spec.noise_hu / 2, shape).astype(np.float32)
    return image.astype(np.float32), label, ras_affine(spacing, shape)


def save_nifti(path: str | Path, array: np.ndarray, affine: np.ndarray) -> Path:
    """Write a NIfTI with qform and sform set to ``affine`` (codes 1, scanner)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(array, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, str(path))
    return path


def write_phantom_dataset(
    root: str | Path,
    n_train: int,
    n_test: int,
    seed: int,
    make_case: Callable[[int], tuple[np.ndarray, np.ndarray, np.ndarray]],
    description: dict[str, Any],
    orientations: Sequence[str] = DEFAULT_ORIENTATIONS,
    prefix: str = "phantom",
    unlabelled: int = 0,
) -> Path:
    """Write ``n_train + n_test`` generated cases as a Decathlon layout and return its ``dataset.json``.

    Case ``i`` is ``make_case(seed * 10_000 + i)`` (``(image, label, RAS affine)``), stored in orientation
    ``orientations[i % len(orientations)]`` under ``imagesTr``/``labelsTr`` (training) or ``imagesTs``/``labelsTs``.
    ``description`` holds the ``dataset.json`` keys ``name``, ``description``, ``modality`` and ``labels``.
    ``unlabelled``: the last that many training cases are listed without a label (no label file written), as
    a semi-supervised dataset ships them; test cases keep their labels (``medseg_test_labels``).
    """
    if not 0 <= unlabelled < max(n_train, 1):
        raise ValueError(f"unlabelled must be in [0, n_train), got {unlabelled} for n_train={n_train}")
    root = Path(root)
    training: list[dict[str, Any]] = []
    test: list[dict[str, Any]] = []
    for index in range(n_train + n_test):
        image, label, affine = make_case(seed * 10_000 + index)
        code = orientations[index % len(orientations)]
        image, affine_o = reorient(image, affine, code)
        label, _ = reorient(label, affine, code)
        name = f"{prefix}_{index:03d}"
        split = "Tr" if index < n_train else "Ts"
        save_nifti(root / f"images{split}" / f"{name}.nii.gz", image, affine_o)
        entry = {"image": f"./images{split}/{name}.nii.gz"}
        if not (split == "Tr" and index >= n_train - unlabelled):
            save_nifti(root / f"labels{split}" / f"{name}.nii.gz", label, affine_o)
            entry["label"] = f"./labels{split}/{name}.nii.gz"
        (training if split == "Tr" else test).append(entry)
    info = dict(description)
    name, text, modality, labels = (info.pop(key) for key in ("name", "description", "modality", "labels"))
    return write_dataset_json(root, name, text, list(modality.values()), labels, training, test, **info)


@register_phantom("ct_phantom")
def make_ct_dataset(
    root: str | Path,
    n_train: int,
    n_test: int = 1,
    seed: int = 0,
    orientations: Sequence[str] = DEFAULT_ORIENTATIONS,
    spec: CTPhantomSpec = CTPhantomSpec(),
) -> Path:
    """Write a Decathlon-style CT phantom dataset (``imagesTr``, ``labelsTr``, ``imagesTs``, ``labelsTs``).

    Case ``i`` is stored in orientation ``orientations[i % len(orientations)]``. Returns the path of the
    written ``dataset.json`` (labels: 0 background, 1 organ, 2 lesion).
    """
    description = {
        "name": "medseg CT phantom",
        "description": "Synthetic CT-like phantoms: body, organ, lesions (medseg.data.synthetic)",
        "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "organ", "2": "lesion"},
    }
    return write_phantom_dataset(root, n_train, n_test, seed, lambda s: ct_phantom(s, spec), description, orientations)


def write_dataset_json(
    root: Path,
    name: str,
    description: str,
    modalities: Sequence[str],
    labels: dict[int, str],
    training: list[dict[str, Any]],
    test: list[dict[str, Any]],
    **extra: Any,
) -> Path:
    """Write a phantom's Decathlon ``dataset.json`` (test labels kept under ``medseg_test_labels``).

    Args:
        training / test: entries ``{"image": path or [path per modality], "label": path}`` relative to ``root``.
        **extra: further top-level keys.
    """
    dataset = {
        "name": name,
        "description": description,
        "tensorImageSize": "3D" if len(modalities) == 1 else "4D",
        "modality": {str(i): m for i, m in enumerate(modalities)},
        "labels": {str(k): v for k, v in sorted(labels.items())},
        **extra,
        "numTraining": len(training),
        "numTest": len(test),
        "training": training,
        "test": [t["image"] for t in test],
        "medseg_test_labels": test,
    }
    return write_json(root / "dataset.json", dataset)
