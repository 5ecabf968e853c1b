"""Left-atrium-like MRI phantom (DSAIF's LA task in miniature): structure, not intensity, tells the target.

Each case: soft tissue with a smooth texture; bright blood pools of one and the same intensity: the
*atrium* (label 1: an irregular blob with 2-4 pulmonary veins leaving it) and two distractors, a
*ventricle* (a larger blob inside a thick dark muscle ring) and a descending *aorta* (a thinner vertical
tube with a thin dark wall); small bright and dark specks (a few voxels, below the DSAIF filter's
50-voxel area); a multiplicative bias field, Rician noise and an arbitrary intensity scale per case (as
MRI). A network must tell the atrium by its structure (veins, no muscle ring, size), and the specks are
exactly what a Max-/Min-tree filter removes.

``nuisance=True`` (:data:`NUISANCE`, off by default) adds what DSAIF's argument is about: intensity that
misleads a network while the structure stays: dark *flow voids* inside the blood pools (the atrium keeps its
label) and blood-bright *spots* in the tissue around the atrium (background), balls enclosed by their region
and apart from each other, each smaller in every slice than the filter's 50-pixel area at the pipeline's
2 mm (radius <= 5.5 mm: <= 24 pixels), so the Min-tree view fills the voids and the Max-tree view removes the
spots (tested); plus a stronger bias field and noise (inhomogeneity the filters flatten within a
component). Every case (labelled, unlabelled, test) gets it; it has its own random stream, so a case with
and without it differs only in the voids and spots.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from medseg.data.registry import register_phantom
from medseg.data.synthetic import (
    DEFAULT_ORIENTATIONS,
    bias_field,
    irregular_blob,
    physical_grid,
    ras_affine,
    smooth_noise,
    write_phantom_dataset,
)


@dataclass(frozen=True)
class AtriumPhantomSpec:
    """Parameters of :func:`atrium_phantom` (sizes in mm; intensities relative to blood = 1)."""

    field_of_view_mm: tuple[float, float, float] = (80.0, 80.0, 64.0)
    spacing_mm: tuple[float, float] = (1.6, 2.2)
    atrium_radius_mm: tuple[float, float] = (10.0, 14.0)
    veins: tuple[int, int] = (2, 4)
    vein_radius_mm: tuple[float, float] = (2.5, 3.5)
    myocardium_mm: tuple[float, float] = (4.0, 6.0)
    specks: int = 40
    tissue: float = 0.3
    noise: float = 0.07
    bias_strength: float = 0.15
    voids: int = 0  # dark flow voids inside the blood pools (label unchanged)
    spots: int = 0  # blood-bright spots in the tissue within ``spot_band_mm`` of the atrium (background)
    nuisance_radius_mm: tuple[float, float] = (2.5, 5.5)  # voids and spots: a slice's area <= 24 px at 2 mm
    spot_band_mm: tuple[float, float] = (3.0, 15.0)


#: ``make_atrium_dataset(nuisance=True)``: intensity that misleads pseudo-labels, structure the filters keep
NUISANCE: dict[str, object] = {"voids": 12, "spots": 8, "bias_strength": 0.3, "noise": 0.12}


def tube(grid: Sequence[np.ndarray], start: Sequence[float] | np.ndarray, end: Sequence[float] | np.ndarray, radius: float) -> np.ndarray:
    """Boolean mask of the points within ``radius`` mm of the segment ``start``-``end`` (mm)."""
    a, b = np.asarray(start, dtype=np.float32), np.asarray(end, dtype=np.float32)
    ab = b - a
    length2 = float(ab @ ab) or 1.0
    t = sum((g - ai) * d for g, ai, d in zip(grid, a, ab)) / length2
    t = np.clip(t, 0.0, 1.0)
    dist2 = sum((g - (ai + t * d)) ** 2 for g, ai, d in zip(grid, a, ab))
    return np.asarray(dist2 <= radius**2)


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(3)
    return v / np.linalg.norm(v)


def atrium_phantom(seed: int, spec: AtriumPhantomSpec = AtriumPhantomSpec()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One case in RAS layout: ``(image float32, label uint8 (1 = atrium with veins), affine)``."""
    rng = np.random.default_rng(seed)
    spacing = (rng.uniform(*spec.spacing_mm), rng.uniform(*spec.spacing_mm), rng.uniform(*spec.spacing_mm))
    shape = tuple(int(round(f / s)) for f, s in zip(spec.field_of_view_mm, spacing))
    grid = physical_grid(shape, spacing)
    half = np.asarray(spec.field_of_view_mm) / 2

    image = spec.tissue * (1.0 + 0.15 * smooth_noise(shape, [4.0 / s for s in spacing], rng))
    radius = rng.uniform(*spec.atrium_radius_mm)
    radii = radius * rng.uniform(0.8, 1.2, 3)
    centre = rng.uniform(-0.15, 0.15, 3) * half
    atrium = irregular_blob(grid, centre, radii, rng, irregularity=0.2, spacing=spacing)
    for _ in range(rng.integers(spec.veins[0], spec.veins[1] + 1)):
        direction = _unit(rng)
        direction[2] *= 0.5  # veins run mostly in-plane
        direction /= np.linalg.norm(direction)
        start = centre + direction * radius * 0.7
        end = centre + direction * (radius + rng.uniform(12, 22))
        atrium |= tube(grid, start, end, rng.uniform(*spec.vein_radius_mm))

    # distractors of the same brightness, told apart by structure: a ventricle inside a thick dark muscle
    # ring (myocardium), a descending aorta (a thinner tube through every slice with a thin dark wall)
    side = _unit(rng)
    side[2] = 0.0
    side /= np.linalg.norm(side) or 1.0
    ventricle_r = radius * rng.uniform(1.0, 1.3)
    muscle = rng.uniform(*spec.myocardium_mm)
    ventricle_c = centre + side * (radius + ventricle_r + muscle + rng.uniform(1.0, 3.0))
    ventricle = irregular_blob(grid, ventricle_c, (ventricle_r,) * 3, rng, irregularity=0.15, spacing=spacing) & ~atrium
    myocardium = (ndimage.distance_transform_edt(~ventricle, sampling=spacing) <= muscle) & ~ventricle & ~atrium
    aorta_xy = centre[:2] - side[:2] * (radius + rng.uniform(10, 14))
    aorta = tube(grid, (*aorta_xy, -half[2]), (*aorta_xy, half[2]), rng.uniform(5.0, 7.0)) & ~atrium
    aorta_wall = ndimage.binary_dilation(aorta, iterations=1) & ~aorta & ~atrium
    blood = rng.uniform(0.9, 1.1)
    image[myocardium | aorta_wall] = spec.tissue * 0.55
    image[ventricle | aorta | atrium] = blood
    if spec.voids or spec.spots:
        # their own random stream: the same case with and without them differs only in their voxels
        nuisance_rng = np.random.default_rng([seed, 1])
        _add_nuisance(image, grid, spacing, atrium, ventricle | aorta | atrium, myocardium | aorta_wall, blood, spec, nuisance_rng)

    # specks below the filter's area: bright (fat) and dark (calcifications / air) dots of 1-2 voxels
    for _ in range(spec.specks):
        idx = tuple(int(rng.integers(0, n)) for n in shape)
        sl = tuple(slice(i, i + int(rng.integers(1, 3))) for i in idx)
        image[sl] = rng.choice([blood * 0.9, spec.tissue * 0.2])

    image = image * bias_field(shape, rng, strength=spec.bias_strength)
    sigma = spec.noise
    image = np.sqrt((image + rng.normal(0, sigma, shape)) ** 2 + rng.normal(0, sigma, shape) ** 2)  # Rician magnitude
    image *= rng.uniform(200, 800)  # arbitrary MRI units
    return image.astype(np.float32), atrium.astype(np.uint8), ras_affine(spacing, shape)


def _balls(
    image: np.ndarray,
    grid: Sequence[np.ndarray],
    spacing: Sequence[float],
    count: int,
    room: np.ndarray,
    allowed: np.ndarray,
    values: tuple[float, float],
    spec: AtriumPhantomSpec,
    rng: np.random.Generator,
) -> None:
    """In place: ``count`` balls of value ``uniform(*values)``, each with at least 4 mm of ``room`` (mm to the
    nearest voxel outside the region it sits in) around it, so that it is enclosed by that region, and
    4 mm apart from the others (each stays a component of its own)."""
    points = np.stack([np.broadcast_to(g, image.shape).ravel() for g in grid], axis=-1)
    for _ in range(count):
        radius = rng.uniform(*spec.nuisance_radius_mm)
        candidates = np.flatnonzero(allowed & (room >= radius + 4.0))
        if not len(candidates):
            continue
        centre = points[candidates[rng.integers(len(candidates))]]
        distance2 = sum((g - c) ** 2 for g, c in zip(grid, centre))
        image[np.asarray(distance2 <= radius**2)] = rng.uniform(*values)
        allowed = allowed & np.asarray(distance2 > (radius + spec.nuisance_radius_mm[1] + 4.0) ** 2)  # apart


def _add_nuisance(
    image: np.ndarray, grid: Sequence[np.ndarray], spacing: Sequence[float], atrium: np.ndarray, blood: np.ndarray,
    walls: np.ndarray, blood_level: float, spec: AtriumPhantomSpec, rng: np.random.Generator,
) -> None:
    """In place: ``spec.voids`` dark balls inside the blood pools (enclosed by blood) and ``spec.spots``
    blood-bright balls in the tissue ``spot_band_mm`` from the atrium (enclosed by tissue)."""
    inside = ndimage.distance_transform_edt(blood, sampling=spacing)
    _balls(image, grid, spacing, spec.voids, inside, blood, (spec.tissue * 0.3, spec.tissue * 0.8), spec, rng)
    tissue = ~blood & ~walls
    to_atrium = ndimage.distance_transform_edt(~atrium, sampling=spacing)
    band = tissue & (to_atrium >= spec.spot_band_mm[0]) & (to_atrium <= spec.spot_band_mm[1])
    room = ndimage.distance_transform_edt(tissue, sampling=spacing)
    _balls(image, grid, spacing, spec.spots, room, band, (blood_level * 0.9, blood_level * 1.1), spec, rng)


@register_phantom("atrium_phantom")
def make_atrium_dataset(
    root: str | Path,
    n_train: int,
    n_test: int = 1,
    seed: int = 0,
    orientations: Sequence[str] = DEFAULT_ORIENTATIONS,
    unlabelled: int = 0,
    spec: AtriumPhantomSpec = AtriumPhantomSpec(),
    nuisance: bool = False,
) -> Path:
    """Write a Decathlon-style atrium phantom dataset; returns its ``dataset.json`` (labels 0/1).

    ``unlabelled``: the last that many training cases are listed without a label (no label file written),
    as a semi-supervised dataset ships them. Test cases keep their labels (``medseg_test_labels``).
    ``nuisance``: every case gets :data:`NUISANCE` (flow voids, bright spots, stronger bias and noise; a
    pipeline sets it as ``data.synthetic.options: {nuisance: true}``).
    """
    if nuisance:
        spec = replace(spec, **NUISANCE)  # type: ignore[arg-type]  # the keys are fields of the spec
    description = {
        "name": "medseg atrium phantom",
        "description": "Synthetic left-atrium-like MRI: atrium with veins among same-intensity distractors"
        " (medseg.data.atrium_phantom)",
        "modality": {"0": "MRI"},
        "labels": {"0": "background", "1": "atrium"},
    }
    return write_phantom_dataset(
        root, n_train, n_test, seed, lambda s: atrium_phantom(s, spec), description, orientations, "atrium", unlabelled
    )
