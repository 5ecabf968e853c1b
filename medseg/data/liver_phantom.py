"""Liver/tumour CT phantom (``data.synthetic.kind: liver_phantom``) for H-DenseUNet's tests, notebook and claims.

Each case is an abdomen-like CT in HU built in physical (mm) space from :mod:`medseg.data.synthetic`'s blocks:
air, body with subcutaneous fat and a muscle wall, mixed fat/bowel texture, spine and ribs, aorta and IVC,
kidneys, a spleen of liver-like density on the other side (a localiser must use position and shape, not
intensity alone), a gas-filled stomach, and the liver (label 1): right lobe, left lobe across the midline
and caudate lobe, with enhancing vessel branches (labelled liver, as in LiTS). Several lesions (label 2) of
varied size (log-uniform radii) and contrast: mostly hypodense, some hyperdense, some barely visible, some
with a rim. Then blur (partial volume), correlated and white noise, anisotropic voxels (thick slices), and
the case stored in one of several orientations.

Inter-slice option (default off; the H-DenseUNet claim experiment, see ``pipelines/experiments/hdenseunet_design.md``):
``lesion_shape: sphere`` makes every lesion a smooth sphere lying whole inside the liver, its radius uniform in
``lesion_radius_mm``, with one contrast range (``lesion_contrast_hu``), and ``mimics: [lo, hi]`` adds that many vessel sections running along z (capsules: a
cylinder of ``mimic_length_mm`` with round ends, tilted at most ``mimic_tilt_deg`` from z) with the lesions'
radius range and contrast range, labelled liver (vessels are liver in LiTS). One axial slice through a mimic
shows a disk like a slice through a tumour; only the slices above and below tell round from tubular.

Axes: RAS, so the patient's right (the liver's side) is +x, anterior +y, superior +z.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from medseg.data.registry import register_phantom
from medseg.data.synthetic import DEFAULT_ORIENTATIONS, irregular_blob, physical_grid, ras_affine, smooth_noise, write_phantom_dataset

LABELS = {"0": "background", "1": "liver", "2": "tumour"}


@dataclass(frozen=True)
class LiverPhantomSpec:
    """Parameters of :func:`liver_phantom` (mm, HU). Every field is a ``data.synthetic.options`` key."""

    field_of_view_mm: tuple[float, float, float] = (230.0, 180.0, 170.0)
    spacing_xy_mm: tuple[float, float] = (1.4, 1.9)
    spacing_z_mm: tuple[float, float] = (2.5, 5.0)
    lesions: tuple[int, int] = (2, 6)
    lesion_radius_mm: tuple[float, float] = (3.0, 16.0)
    liver_hu: tuple[float, float] = (60.0, 110.0)
    noise_hu: tuple[float, float] = (8.0, 18.0)
    vessels: int = 4
    lesion_shape: str = "irregular"  # or "sphere" (inter-slice option, with mimics)
    lesion_contrast_hu: tuple[float, float] = (-70.0, -40.0)  # spheres and mimics: HU relative to the liver
    mimics: tuple[int, int] = (0, 0)
    mimic_length_mm: tuple[float, float] = (20.0, 32.0)  # the cylinder between the round ends
    mimic_tilt_deg: float = 10.0


LESION_SHAPES = ("irregular", "sphere")


def _ellipsoid(grid: Sequence[np.ndarray], centre: Sequence[float], radii: Sequence[float]) -> np.ndarray:
    return np.asarray(sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1.0)


def _segment_distance(grid: Sequence[np.ndarray], p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    """Distance (mm) of every voxel centre to the segment ``p0 -> p1``."""
    d = p1 - p0
    rel = [g - c for g, c in zip(grid, p0)]
    t = np.clip(sum(r * di for r, di in zip(rel, d)) / max(float(d @ d), 1e-6), 0.0, 1.0)
    return np.sqrt(sum((r - t * di) ** 2 for r, di in zip(rel, d)))


def _vessel_tree(grid: Sequence[np.ndarray], hilum: np.ndarray, branches: int, rng: np.random.Generator) -> np.ndarray:
    """Tubes branching out of ``hilum`` into the right upper abdomen (two generations per branch)."""
    mask = np.zeros(np.broadcast_shapes(*(g.shape for g in grid)), dtype=bool)
    for _ in range(branches):
        direction = np.array([rng.uniform(0.3, 1.0), rng.uniform(-0.6, 0.8), rng.uniform(-0.5, 0.9)])
        direction /= np.linalg.norm(direction)
        radius, length = rng.uniform(2.5, 4.5), rng.uniform(35.0, 60.0)
        end = hilum + direction * length
        mask |= _segment_distance(grid, hilum, end) <= radius
        for _ in range(2):
            child = direction + rng.normal(0, 0.6, 3)
            child /= np.linalg.norm(child)
            start = hilum + direction * length * rng.uniform(0.5, 1.0)
            mask |= _segment_distance(grid, start, start + child * length * 0.6) <= radius * 0.65
    return mask


def _place(
    candidates: np.ndarray, depth: np.ndarray, free: np.ndarray, grid: Sequence[np.ndarray], spacing: Sequence[float],
    shape_of: Any, radius: float, rng: np.random.Generator, tries: int = 60,
) -> np.ndarray | None:
    """A mask from ``shape_of(centre)`` (``(mask, ends)``) lying whole in ``free`` with every end point at least
    ``radius`` deep in the liver (``depth``: distance to its surface, mm); ``None`` after ``tries`` misses."""
    deep = candidates[depth[tuple(candidates.T)] >= radius + 1.5]
    for _ in range(tries if len(deep) else 0):
        centre = np.array([float(g.reshape(-1)[i]) for g, i in zip(grid, deep[rng.integers(len(deep))])])
        mask, ends = shape_of(centre)
        origin = np.array([float(g.reshape(-1)[0]) for g in grid])
        ends_vox = [np.clip(np.round((e - origin) / spacing).astype(int), 0, np.array(depth.shape) - 1) for e in ends]
        if any(depth[tuple(v)] < radius + 1.5 for v in ends_vox) or (mask & ~free).any():
            continue
        return mask
    return None


def _spheres_and_mimics(
    grid: Sequence[np.ndarray], spacing: Sequence[float], liver: np.ndarray, spec: LiverPhantomSpec, rng: np.random.Generator,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The inter-slice option: round tumours and tubular look-alikes along z, none touching another (masks)."""
    depth = ndimage.distance_transform_edt(liver, sampling=spacing)
    candidates = np.argwhere(depth > 0)
    free = depth >= 1.5  # inside the liver, off its surface; shrinks as objects are placed (3 mm apart)
    tumours: list[np.ndarray] = []
    mimics: list[np.ndarray] = []

    def radius() -> float:
        return float(rng.uniform(*spec.lesion_radius_mm))

    spheres = spec.lesions if spec.lesion_shape == "sphere" else (0, 0)  # else the irregular lesions follow
    for kind, count in (("mimic", spec.mimics), ("tumour", spheres)):
        for _ in range(int(rng.integers(count[0], count[1] + 1))):
            r = radius()
            if kind == "tumour":
                mask = _place(candidates, depth, free, grid, spacing, lambda c, r=r: (_ellipsoid(grid, c, (r, r, r)), [c]), r, rng)
            else:
                length, tilt, turn = rng.uniform(*spec.mimic_length_mm), np.radians(rng.uniform(0, spec.mimic_tilt_deg)), rng.uniform(0, 2 * np.pi)
                axis = np.array([np.sin(tilt) * np.cos(turn), np.sin(tilt) * np.sin(turn), np.cos(tilt)]) * length / 2

                def capsule(c: np.ndarray, r: float = r, axis: np.ndarray = axis) -> tuple[np.ndarray, list[np.ndarray]]:
                    return _segment_distance(grid, c - axis, c + axis) <= r, [c - axis, c + axis]

                mask = _place(candidates, depth, free, grid, spacing, capsule, r, rng)
            if mask is not None:
                (tumours if kind == "tumour" else mimics).append(mask)
                free &= ~ndimage.binary_dilation(mask, iterations=max(1, int(round(3.0 / min(spacing)))))
    return tumours, mimics


def _body(grid: Sequence[np.ndarray], fov: np.ndarray, rng: np.random.Generator, image: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """Fat, muscle wall and textured interior; returns the interior mask and its semi-axes."""
    x, y, _ = grid
    shape = image.shape
    rx, ry = fov[0] * rng.uniform(0.40, 0.46), fov[1] * rng.uniform(0.36, 0.42)
    fat, wall = rng.uniform(6.0, 14.0), rng.uniform(5.0, 9.0)

    def ellipse(shrink: float) -> np.ndarray:
        return np.broadcast_to(((x / (rx - shrink)) ** 2 + (y / (ry - shrink)) ** 2) <= 1.0, shape)

    image[ellipse(0)] = -100.0
    image[ellipse(fat)] = 50.0
    interior = ellipse(fat + wall)
    texture = smooth_noise(shape, 2.0, rng)
    image[interior] = np.where(texture[interior] > 0.3, -90.0, 25.0)  # mesenteric fat / bowel wall mix
    return interior, (rx - fat - wall, ry - fat - wall)


def liver_phantom(seed: int, spec: LiverPhantomSpec = LiverPhantomSpec()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One abdomen-like CT case (see the module docstring).

    Returns:
        ``(image float32 HU, label uint8 (0 background, 1 liver, 2 tumour), RAS affine)``, arrays ``(I, J, K)``.
    """
    if spec.lesion_shape not in LESION_SHAPES:
        raise ValueError(f"lesion_shape must be one of {LESION_SHAPES}, got {spec.lesion_shape!r}")
    rng = np.random.default_rng(seed)
    spacing = (rng.uniform(*spec.spacing_xy_mm),) * 2 + (rng.uniform(*spec.spacing_z_mm),)
    shape = tuple(int(round(f / s)) for f, s in zip(spec.field_of_view_mm, spacing))
    grid = physical_grid(shape, spacing)
    fov = np.asarray(spec.field_of_view_mm)
    image = np.full(shape, -1000.0, dtype=np.float32)
    interior, (rx, ry) = _body(grid, fov, rng, image)

    def organ(centre: Sequence[float], radii: Sequence[float], irregularity: float = 0.15) -> np.ndarray:
        # bounded: where the perturbation field's far tail flips the sign, irregular_blob has stray specks
        bound = _ellipsoid(grid, centre, [1.6 * r for r in radii])
        return irregular_blob(grid, centre, radii, rng, irregularity, spacing) & interior & bound

    spine_c = (0.0, -ry * 0.62, 0.0)
    bone = organ(spine_c, (16.0, 14.0, 1e4), 0.0)
    canal = _ellipsoid(grid, (0.0, -ry * 0.72, 0.0), (6.0, 5.0, 1e4))
    for angle in np.linspace(-0.6, 1.3, 6):  # rib cross-sections hugging the inner body wall, both sides
        for side in (1, -1):
            rib = (side * (rx - 5) * np.cos(angle), (ry - 5) * np.sin(angle), rng.uniform(-60, 60))
            bone |= _ellipsoid(grid, rib, (4.0, 4.0, rng.uniform(20, 50))) & interior
    image[bone] = rng.uniform(350, 650)
    image[canal & interior] = 20.0

    liver_hu = rng.uniform(*spec.liver_hu)
    z0 = rng.uniform(0, 15)
    right = organ((rx * rng.uniform(0.4, 0.5), ry * rng.uniform(-0.15, 0.05), z0), (rx * 0.45, ry * 0.6, rng.uniform(36, 44)), 0.15)
    left = organ((rx * rng.uniform(-0.15, 0.05), ry * rng.uniform(0.25, 0.4), z0 + rng.uniform(5, 15)), (rx * 0.4, ry * 0.32, rng.uniform(22, 30)), 0.2)
    caudate = organ((rx * 0.12, -ry * 0.28, z0 + 10), (16.0, 14.0, 22.0), 0.15)
    liver = (right | left | caudate) & ~bone

    kidney_z = z0 - rng.uniform(40, 55)
    for side in (1, -1):
        kidney = organ((side * rx * 0.42, -ry * 0.45, kidney_z + rng.uniform(-8, 8)), (22.0, 16.0, 40.0), 0.1)
        image[kidney] = rng.uniform(140, 200)
        liver &= ~kidney
    spleen = organ((-rx * rng.uniform(0.55, 0.68), -ry * rng.uniform(0.1, 0.3), z0 + rng.uniform(-5, 10)), (20.0, 28.0, 36.0), 0.2) & ~bone
    image[spleen] = liver_hu + rng.uniform(-12, 12)
    stomach = organ((-rx * 0.35, ry * 0.3, z0 + 15), (32.0, 24.0, 35.0), 0.15) & ~liver & ~spleen
    image[stomach] = 15.0
    gas = stomach & np.broadcast_to(grid[1] > ry * 0.42, shape)
    image[gas] = -900.0
    aorta = organ((-14.0, -ry * 0.38, 0.0), (11.0, 11.0, 1e4), 0.0)
    ivc = organ((rx * 0.1, -ry * 0.3, 0.0), (12.0, 10.0, 1e4), 0.0)

    image[liver] = liver_hu + 6.0 * smooth_noise(shape, 1.5, rng)[liver]
    vessel_hu = liver_hu + rng.uniform(30, 80) if rng.random() < 0.8 else liver_hu - rng.uniform(15, 25)
    hilum = np.array([rx * 0.15, -ry * 0.15, z0])
    image[_vessel_tree(grid, hilum, spec.vessels, rng) & liver] = vessel_hu
    image[aorta] = rng.uniform(150, 250)
    image[ivc] = vessel_hu
    label = liver.astype(np.uint8)

    if spec.lesion_shape == "sphere" or spec.mimics[1] > 0:
        tumours, mimics = _spheres_and_mimics(grid, spacing, liver, spec, rng)
        for mask in tumours + mimics:
            image[mask] = liver_hu + rng.uniform(*spec.lesion_contrast_hu)
        for mask in tumours:
            label[mask] = 2
    inside = np.argwhere(ndimage.binary_erosion(liver, iterations=2)) if spec.lesion_shape == "irregular" else np.zeros((0, 3))
    for _ in range(int(rng.integers(spec.lesions[0], spec.lesions[1] + 1)) if len(inside) else 0):
        radius = float(np.exp(rng.uniform(np.log(spec.lesion_radius_mm[0]), np.log(spec.lesion_radius_mm[1]))))
        centre = [float(g.reshape(-1)[i]) for g, i in zip(grid, inside[rng.integers(len(inside))])]
        radii = (radius, radius * rng.uniform(0.8, 1.2), radius)
        lesion = irregular_blob(grid, centre, radii, rng, 0.2, spacing) & liver & _ellipsoid(grid, centre, [1.6 * r for r in radii])
        kind = rng.random()
        # portal-venous-like: most lesions 30-80 HU darker than the parenchyma, some brighter, some faint
        contrast = rng.uniform(-80, -30) if kind < 0.65 else rng.uniform(30, 60) if kind < 0.85 else rng.uniform(-20, -10)
        image[lesion] = liver_hu + contrast
        if radius > 8 and rng.random() < 0.4:  # enhancing rim
            rim = lesion & ~ndimage.binary_erosion(lesion, iterations=1)
            image[rim] = liver_hu + rng.uniform(15, 35)
        label[lesion] = 2

    image = ndimage.gaussian_filter(image, (0.6, 0.6, 0.3))  # partial volume / scanner blur
    noise = rng.uniform(*spec.noise_hu)
    image += noise * smooth_noise(shape, 0.7, rng) + rng.normal(0, noise / 2, shape).astype(np.float32)
    return image.astype(np.float32), label, ras_affine(spacing, shape)


@register_phantom("liver_phantom")
def make_liver_dataset(
    root: str | Path,
    n_train: int,
    n_test: int = 1,
    seed: int = 0,
    orientations: Sequence[str] = DEFAULT_ORIENTATIONS,
    **options: Any,
) -> Path:
    """Write liver/tumour phantoms as a Decathlon layout (``imagesTr``/``labelsTr``/``imagesTs``/``labelsTs``).

    ``options`` are :class:`LiverPhantomSpec` fields (e.g. ``spacing_z_mm: [4, 5]``). Returns ``dataset.json``.
    """
    known = {f.name for f in fields(LiverPhantomSpec)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"unknown liver_phantom option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    spec = LiverPhantomSpec(**values)
    description = {
        "name": "medseg liver phantom",
        "description": "Synthetic abdomen CT with liver and tumours (medseg.data.liver_phantom)",
        "modality": {"0": "CT"},
        "labels": LABELS,
    }
    return write_phantom_dataset(root, n_train, n_test, seed, lambda s: liver_phantom(s, spec), description, orientations, "liver")
