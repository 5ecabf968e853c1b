"""Synthetic 4-modality glioma phantoms with nested tumour regions (``data.synthetic.kind: glioma_phantom``).

Each case mimics a skull-stripped, co-registered BraTS case: a brain (white matter, a cortical grey-matter ribbon,
two lateral ventricles), zero outside the brain, and a glioma made of nested irregular regions:

- whole tumour (WT) = oedema shell (label 2) around the tumour core;
- tumour core (TC) = necrotic centre + non-enhancing core (label 1) and an enhancing rim (label 4, or 3 in the
  2023 convention) around the necrosis; a fraction of cases (``no_enhancement``) have a core without enhancing
  tumour, as many lower-grade gliomas do (their ET is empty: the empty-region policy matters); the dataset writers
  spread them evenly over the case indices (:func:`without_enhancement`);
- so WT ⊇ TC ⊇ ET, as in BraTS.

Thin, low-contrast rim (options, default off; issue 17, the nested-class claim experiment): with
``enhancing_rim_mm`` the enhancing tumour is only the outer layer of the core, the core voxels within a per-case
thickness (drawn from that range, mm) of the core's border, and the rest of the core is necrosis/non-enhancing;
``enhancing_contrast`` c < 1 moves the enhancing tissue's intensities towards the non-enhancing core's (per
modality ``necrosis + c * (enhancing - necrosis)``). The ET is then a thin shell that is told from the rest of the
core mainly by where it lies (at the core's border, inside it), which is what the nesting prior WT ⊇ TC ⊇ ET
states.

Contrasts follow real BraTS appearance (relative intensities, see :data:`TISSUE_INTENSITY`): the enhancing rim is
bright on T1ce only; oedema is bright on T2 and FLAIR; necrosis is dark on T1/T1ce and bright on T2; CSF is bright on
T2 and suppressed on FLAIR. Per case and modality: tissue values jitter, a random global gain (MR intensities have
no absolute scale), a smooth bias field, texture and noise.

The building blocks are :mod:`medseg.data.synthetic`'s (physical_grid, smooth_noise, irregular_blob, bias_field,
ras_affine, save_nifti).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from medseg.data.brats import MODALITIES, NAMINGS
from medseg.data.brats_labels import LEVEL_NAMES, LEVEL_TO_LABEL
from medseg.data.registry import register_phantom
from medseg.data.synthetic import (
    bias_field,
    irregular_blob,
    physical_grid,
    ras_affine,
    save_nifti,
    smooth_noise,
    write_dataset_json,
)
from medseg.errors import MedsegConfigError
from medseg.io.geometry import reorient

#: tissues, in the order of :data:`TISSUE_INTENSITY`'s columns
TISSUES = ("white matter", "grey matter", "CSF", "oedema", "necrosis", "enhancing")
#: mean relative intensity per modality (rows: T1, T1ce, T2, FLAIR) and tissue (columns: :data:`TISSUES`)
TISSUE_INTENSITY = np.array(
    [
        [0.90, 0.65, 0.25, 0.55, 0.35, 0.60],  # T1: tumour hypo-intense, enhancing rim not bright before contrast
        [0.90, 0.68, 0.25, 0.58, 0.35, 1.40],  # T1ce: the enhancing rim lights up
        [0.45, 0.65, 1.30, 1.05, 1.20, 0.85],  # T2: oedema, necrosis and CSF bright
        [0.55, 0.70, 0.15, 1.25, 0.85, 1.05],  # FLAIR: oedema bright, CSF suppressed
    ],
    dtype=np.float32,
)
#: levels (see medseg.data.brats_labels) of the tumour tissues
_LEVEL = {"oedema": 1, "necrosis": 2, "enhancing": 3}
DEFAULT_ORIENTATIONS = ("LPS", "RAS")


@dataclass(frozen=True)
class GliomaPhantomSpec:
    """Parameters of :func:`glioma_phantom` (sizes in mm; ``*_fraction`` relative to the enclosing region)."""

    field_of_view_mm: tuple[float, float, float] = (144.0, 176.0, 128.0)
    spacing_mm: tuple[float, float, float] = (2.0, 2.0, 2.0)
    tumour_radius_mm: tuple[float, float] = (18.0, 30.0)
    core_fraction: tuple[float, float] = (0.5, 0.7)
    necrosis_fraction: tuple[float, float] = (0.35, 0.6)
    no_enhancement: float = 0.15
    irregularity: float = 0.3
    intensity_jitter: float = 0.06
    noise: float = 0.04
    #: thickness range (mm) of a thin enhancing rim at the core's border; None: the core minus the necrosis blob
    enhancing_rim_mm: tuple[float, float] | None = None
    #: enhancing intensities = necrosis + c * (enhancing - necrosis) per modality; 1: the BraTS-like contrast
    enhancing_contrast: float = 1.0

    def __post_init__(self) -> None:
        rim = self.enhancing_rim_mm
        if rim is not None and not (len(rim) == 2 and 0 < rim[0] <= rim[1]):
            raise MedsegConfigError(f"glioma_phantom option enhancing_rim_mm must be [low, high] with 0 < low <= high, got {list(rim)}")
        if not 0.0 <= self.enhancing_contrast <= 1.0:
            raise MedsegConfigError(f"glioma_phantom option enhancing_contrast must be in [0, 1], got {self.enhancing_contrast}")

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> GliomaPhantomSpec:
        """Spec from ``data.synthetic.options`` (lists become tuples; unknown keys are a config error)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise MedsegConfigError(f"data.synthetic.options: unknown glioma_phantom option(s) {unknown}; known: {sorted(names)}")
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
        return cls(**values)


def _brain(grid: Sequence[np.ndarray], fov: np.ndarray, spacing: Sequence[float], rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Brain, white-matter and ventricle masks."""
    radii = fov * rng.uniform(0.42, 0.46, 3)
    brain = irregular_blob(grid, (0.0, 0.0, 0.0), radii, rng, irregularity=0.06, spacing=spacing)
    white = irregular_blob(grid, (0.0, 0.0, 0.0), radii * 0.78, rng, irregularity=0.2, spacing=spacing) & brain
    ventricles = np.zeros_like(brain)
    size = np.array([rng.uniform(5, 8), rng.uniform(16, 22), rng.uniform(8, 12)])
    for side in (-1.0, 1.0):
        centre = (side * rng.uniform(8, 12), rng.uniform(-6, 6), rng.uniform(0, 8))
        ventricles |= irregular_blob(grid, centre, size, rng, irregularity=0.1, spacing=spacing)
    return brain, white, ventricles & brain


def _tumour_levels(
    grid: Sequence[np.ndarray],
    brain: np.ndarray,
    spec: GliomaPhantomSpec,
    spacing: Sequence[float],
    rng: np.random.Generator,
    enhancing: bool | None,
) -> np.ndarray:
    """Level map (0 outside, 1 oedema, 2 necrosis/non-enhancing core, 3 enhancing) of one tumour inside ``brain``."""
    inside = np.argwhere(ndimage.binary_erosion(brain, iterations=max(1, int(round(15.0 / min(spacing))))))
    if len(inside) == 0:
        inside = np.argwhere(brain)
    centre = [float(g.reshape(-1)[i]) for g, i in zip(grid, inside[rng.integers(len(inside))])]
    r_wt = rng.uniform(*spec.tumour_radius_mm)
    wt = irregular_blob(grid, centre, r_wt * rng.uniform(0.8, 1.2, 3), rng, spec.irregularity, spacing) & brain
    r_tc = r_wt * rng.uniform(*spec.core_fraction)
    shift = rng.normal(0.0, 0.1 * r_wt, 3)
    tc = irregular_blob(grid, np.add(centre, shift), (r_tc,) * 3, rng, spec.irregularity * 0.7, spacing) & wt
    necrosis = irregular_blob(grid, np.add(centre, shift), (r_tc * rng.uniform(*spec.necrosis_fraction),) * 3, rng, 0.15, spacing) & tc
    levels = np.zeros(brain.shape, dtype=np.uint8)
    levels[wt] = _LEVEL["oedema"]
    draw = rng.random()  # drawn either way: the rest of the case does not depend on ``enhancing``
    enhancing = draw >= spec.no_enhancement if enhancing is None else enhancing
    if spec.enhancing_rim_mm is None:
        levels[tc] = _LEVEL["enhancing"] if enhancing else _LEVEL["necrosis"]
        levels[necrosis] = _LEVEL["necrosis"]
        return levels
    thickness = rng.uniform(*spec.enhancing_rim_mm)
    levels[tc] = _LEVEL["necrosis"]
    if enhancing:  # the core's voxels within ``thickness`` of its border (distance to the nearest voxel outside)
        depth = ndimage.distance_transform_edt(tc, sampling=spacing)
        levels[tc & (depth <= thickness)] = _LEVEL["enhancing"]
    return levels


def glioma_phantom(
    seed: int, spec: GliomaPhantomSpec = GliomaPhantomSpec(), enhancing: bool | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One glioma case in RAS layout.

    Args:
        enhancing: whether the core has an enhancing rim; ``None``: random with probability
            ``1 - spec.no_enhancement``.

    Returns:
        ``(images (4, I, J, K) float32 in the order T1, T1ce, T2, FLAIR, levels (I, J, K) uint8, affine)``; levels
        are 0 background, 1 oedema, 2 necrosis/non-enhancing core, 3 enhancing (map them to BraTS labels with
        :func:`medseg.data.brats_labels.levels_to_labels`).
    """
    rng = np.random.default_rng(seed)
    spacing = tuple(float(s) for s in spec.spacing_mm)
    fov = np.asarray(spec.field_of_view_mm, dtype=float)
    shape = tuple(int(round(f / s)) for f, s in zip(fov, spacing))
    grid = physical_grid(shape, spacing)
    brain, white, ventricles = _brain(grid, fov, spacing, rng)
    levels = _tumour_levels(grid, brain, spec, spacing, rng, enhancing)

    tissue = np.full(shape, 1, dtype=np.int64)  # grey matter
    tissue[white] = 0
    tissue[ventricles] = 2
    for name, level in _LEVEL.items():
        tissue[levels == level] = TISSUES.index(name)
    images = np.zeros((len(MODALITIES), *shape), dtype=np.float32)
    texture_sigma = [max(3.0 / s, 0.5) for s in spacing]
    for m in range(len(MODALITIES)):
        values = TISSUE_INTENSITY[m] * (1.0 + spec.intensity_jitter * rng.standard_normal(len(TISSUES))).astype(np.float32)
        if spec.enhancing_contrast != 1.0:
            enh, nec = TISSUES.index("enhancing"), TISSUES.index("necrosis")
            values[enh] = values[nec] + spec.enhancing_contrast * (values[enh] - values[nec])
        image = values[tissue] * (1.0 + 0.05 * smooth_noise(shape, texture_sigma, rng))
        image = ndimage.gaussian_filter(image, 0.5)  # partial volume at tissue borders
        image *= bias_field(shape, rng, 0.1) * rng.uniform(0.5, 2.0)  # MR intensities have no absolute scale
        image += spec.noise * float(image[brain].mean()) * rng.standard_normal(shape).astype(np.float32)
        images[m] = np.where(brain, np.maximum(image, 0.0), 0.0)  # skull-stripped: zero outside the brain
    return images, levels, ras_affine(spacing, shape)


def without_enhancement(index: int, fraction: float) -> bool:
    """Whether dataset case ``index`` lacks enhancing tumour: exactly ``fraction`` of the cases, evenly spread over
    the indices (case i when ``floor((i + 1) f) > floor(i f)``), so small training and test sets both hold some."""
    return int(np.floor((index + 1) * fraction + 1e-9)) > int(np.floor(index * fraction + 1e-9))


def _cases(
    n: int, seed: int, spec: GliomaPhantomSpec, orientations: Sequence[str], convention: str
) -> Iterator[tuple[int, list[np.ndarray], np.ndarray, np.ndarray]]:
    """Yield ``(index, images per modality, BraTS labels, affine)`` in the stored orientations."""
    table = np.asarray(LEVEL_TO_LABEL[convention], dtype=np.uint8)
    for index in range(n):
        images, levels, affine = glioma_phantom(seed * 10_000 + index, spec, enhancing=not without_enhancement(index, spec.no_enhancement))
        code = orientations[index % len(orientations)]
        label, affine_o = reorient(table[levels], affine, code)
        yield index, [reorient(image, affine, code)[0] for image in images], label, affine_o


def _check_convention(convention: str) -> None:
    if convention not in LEVEL_TO_LABEL:
        raise MedsegConfigError(f"data.synthetic.options.convention must be one of {sorted(LEVEL_TO_LABEL)}, got {convention!r}")


@register_phantom("glioma_phantom")
def make_glioma_dataset(
    root: str | Path,
    n_train: int,
    n_test: int = 1,
    seed: int = 0,
    convention: str = "2018",
    orientations: Sequence[str] = DEFAULT_ORIENTATIONS,
    **options: Any,
) -> Path:
    """Write a Decathlon-style glioma dataset (nnU-Net channel naming ``case_0000`` .. ``case_0003``).

    Args:
        convention: label values: ``"2018"`` (0, 1, 2, 4) or ``"2023"`` (0, 1, 2, 3).
        orientations: stored orientation of case ``i`` is ``orientations[i % len]`` (BraTS files are LPS).
        **options: :class:`GliomaPhantomSpec` fields (e.g. ``spacing_mm``).

    Returns:
        The path of the written ``dataset.json``.
    """
    _check_convention(convention)
    spec = GliomaPhantomSpec.from_options(options)
    root = Path(root)
    training: list[dict[str, Any]] = []
    test: list[dict[str, Any]] = []
    for index, images, label, affine in _cases(n_train + n_test, seed, spec, orientations, convention):
        name, split = f"glioma_{index:03d}", "Tr" if index < n_train else "Ts"
        paths = [f"./images{split}/{name}_{c:04d}.nii.gz" for c in range(len(images))]
        for path, image in zip(paths, images):
            save_nifti(root / path, image, affine)
        save_nifti(root / f"labels{split}" / f"{name}.nii.gz", label, affine)
        entry = {"image": paths, "label": f"./labels{split}/{name}.nii.gz"}
        (training if split == "Tr" else test).append(entry)
    return write_dataset_json(
        root,
        "medseg glioma phantom",
        "Synthetic 4-modality gliomas with nested WT/TC/ET regions (medseg.data.glioma_phantom)",
        MODALITIES,
        dict(zip(LEVEL_TO_LABEL[convention], LEVEL_NAMES)),
        training,
        test,
        brats_convention=convention,
    )


def write_brats_layout(
    root: str | Path,
    n_cases: int,
    seed: int = 0,
    naming: str = "2017-2021",
    convention: str = "2018",
    prefix: str = "Phantom",
    suffix: str = ".nii.gz",
    orientations: Sequence[str] = DEFAULT_ORIENTATIONS,
    **options: Any,
) -> Path:
    """Write phantom cases as a BraTS release tree (``<case>/<case>_t1.nii.gz`` ...), for ``data.layout: brats``.

    Args:
        naming: ``"2017-2021"`` (``_t1``, ``_t1ce``, ``_t2``, ``_flair``, ``_seg``) or ``"2023"`` (``-t1n`` ...).
        suffix: ``.nii.gz`` or ``.nii``.
    """
    _check_convention(convention)
    suffixes = NAMINGS[naming]
    spec = GliomaPhantomSpec.from_options(options)
    root = Path(root)
    for index, images, label, affine in _cases(n_cases, seed, spec, orientations, convention):
        case = f"{prefix}_{index:03d}" if naming != "2023" else f"{prefix}-{index:05d}-000"
        for image, end in zip([*images, label], suffixes):
            save_nifti(root / case / f"{case}{end}{suffix}", image, affine)
    return root
