"""Registration pairs with known tissue labels, made from the MNI152 2009 template that nilearn ships.

nilearn's package data holds the ICBM152 2009a (symmetric) T1 template with grey- and white-matter
probability maps at 1 mm (197x233x189); ``nilearn.datasets.load_mni152_*`` resample them on the CPU, with
no download. From these we build:

- tissue labels (:data:`TISSUE_LABELS`): 0 background (outside nilearn's brain mask), then inside the
  brain the most probable of 1 CSF/other (``1 - GM - WM``), 2 grey matter, 3 white matter;
- subjects: the template pulled back through a random smooth diffeomorphism (a Gaussian-smoothed random
  velocity field integrated by scaling and squaring, optionally composed with a small affine), with a bias
  field, a gamma change and noise, then min-max normalised after 0.01 % percentile clipping (MICDIR's
  preprocessing); labels travel with each image through the same deformation (nearest neighbour);
- two contrasts: ``"t1"`` (the template's intensities) and ``"t2"`` (synthesised from the warped tissue
  maps: CSF bright, grey matter middle, white matter dark) for intermodal pairs.

Everything is deterministic given the seed. Arrays are ``(I, J, K)`` in the template's RAS+ voxel axes.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.transforms import ScaleIntensityRangePercentiles

from medseg.data.synthetic import bias_field, smooth_noise
from medseg.networks.blocks.registration import DiffeomorphicIntegration, identity_grid, warp, warp_labels

TISSUE_LABELS: dict[int, str] = {0: "background", 1: "csf_other", 2: "grey_matter", 3: "white_matter"}
#: T2-like intensity of CSF/other, grey matter, white matter (relative; CSF brightest).
T2_INTENSITIES: tuple[float, float, float] = (1.0, 0.6, 0.4)
CONTRASTS = ("t1", "t2")


@dataclass(frozen=True)
class MNI152Template:
    """The template on a chosen grid: ``t1`` in [0, 1], ``gm``/``wm``/``brain`` in [0, 1], ``labels`` uint8."""

    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    brain: np.ndarray
    labels: np.ndarray
    affine: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.t1.shape)

    @property
    def spacing(self) -> tuple[float, ...]:
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))


@functools.lru_cache(maxsize=4)
def _nilearn_maps(resolution_mm: int) -> tuple[np.ndarray, ...]:
    from nilearn import datasets  # imported here: nilearn takes a couple of seconds to import

    images = [
        datasets.load_mni152_template(resolution=resolution_mm),
        datasets.load_mni152_gm_template(resolution=resolution_mm),
        datasets.load_mni152_wm_template(resolution=resolution_mm),
        datasets.load_mni152_brain_mask(resolution=resolution_mm),
    ]
    arrays = [np.clip(np.asarray(img.get_fdata(), dtype=np.float32), 0, None) for img in images]
    arrays.append(np.asarray(images[0].affine, dtype=np.float64))
    for a in arrays:
        a.setflags(write=False)
    return tuple(arrays)


def tissue_labels(gm: np.ndarray, wm: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """0 outside ``brain > 0.5``; inside, 1 + argmax of (CSF/other = 1 - gm - wm, gm, wm). uint8."""
    other = np.clip(1.0 - gm - wm, 0.0, 1.0)
    labels = 1 + np.argmax(np.stack([other, gm, wm]), axis=0)
    return np.where(brain > 0.5, labels, 0).astype(np.uint8)


def _crop_or_pad(array: np.ndarray, start: Sequence[int], size: Sequence[int]) -> np.ndarray:
    """``array[start : start + size]`` per axis, zero outside the array."""
    out = np.zeros(tuple(size), dtype=array.dtype)
    src, dst = [], []
    for s0, n, total in zip(start, size, array.shape, strict=True):
        lo, hi = max(s0, 0), min(s0 + n, total)
        src.append(slice(lo, max(hi, lo)))
        dst.append(slice(lo - s0, lo - s0 + max(hi - lo, 0)))
    out[tuple(dst)] = array[tuple(src)]
    return out


def load_mni152(
    resolution_mm: int = 2,
    shape: Sequence[int] | None = None,
    multiple_of: int | None = 32,
    margin_vox: int = 2,
) -> MNI152Template:
    """The MNI152 template, tissue maps and labels, centred on the brain, on a network-friendly grid.

    Args:
        resolution_mm: isotropic voxel size (nilearn resamples the 1 mm maps; 2 mm gives 99x117x95).
        shape: output grid size; default: the brain's bounding box plus ``margin_vox``, padded up to a
            multiple of ``multiple_of`` (96x96x96 at 2 mm with 32).
        multiple_of: see ``shape`` (None: no rounding).
        margin_vox: background voxels kept around the brain when ``shape`` is None.

    Returns:
        :class:`MNI152Template` whose affine accounts for the crop/pad (world positions are kept).
    """
    if resolution_mm < 1:
        raise ValueError(f"resolution_mm must be a positive integer, got {resolution_mm}")
    t1, gm, wm, brain, affine = _nilearn_maps(int(resolution_mm))
    inside = np.argwhere(brain > 0.5)
    lo, hi = inside.min(0) - margin_vox, inside.max(0) + 1 + margin_vox
    if shape is None:
        size = hi - lo
        if multiple_of:
            size = -(-size // multiple_of) * multiple_of
    else:
        size = np.asarray([int(s) for s in shape])
        if size.shape != (3,) or size.min() < 1:
            raise ValueError(f"shape must be three positive sizes, got {shape}")
    start = np.round((lo + hi) / 2 - size / 2).astype(int)
    crop = [_crop_or_pad(a, start, size) for a in (t1, gm, wm, brain)]
    t1c = crop[0] * (crop[3] > 0.5)  # nilearn's T1 is skull-stripped already; this drops stray voxels
    shift = np.eye(4)
    shift[:3, 3] = start
    return MNI152Template(
        t1=t1c / max(float(t1c.max()), 1e-6),
        gm=crop[1],
        wm=crop[2],
        brain=crop[3],
        labels=tissue_labels(crop[1], crop[2], crop[3]),
        affine=affine @ shift,
    )


@dataclass(frozen=True)
class DeformationSpec:
    """Random smooth deformation: a Gaussian-smoothed random velocity field, scaling and squaring.

    Attributes:
        max_displacement_mm: the velocity's largest vector length is drawn in [0.5, 1] times this.
        smoothness_mm: standard deviation of the Gaussian that smooths the white-noise velocity (larger:
            smoother, more global deformations).
        integration_steps: squarings (7).
        max_rotation_deg / max_scaling: optional affine part (uniform per axis in +/- these), composed after
            the smooth part about the grid centre.
        extra_scales: further velocity components ``(max_displacement_mm, smoothness_mm)``, each drawn and
            scaled as the main one and added to it before integration: multi-scale deformations (a global
            component plus finer, local ones). Default none (the pairs are then as before the option).
    """

    max_displacement_mm: float = 8.0
    smoothness_mm: float = 16.0
    integration_steps: int = 7
    max_rotation_deg: float = 0.0
    max_scaling: float = 0.0
    extra_scales: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        scales = tuple((float(a), float(s)) for a, s in self.extra_scales)  # YAML gives lists of lists
        if any(a < 0 or s <= 0 for a, s in scales):
            raise ValueError(f"extra_scales: (max_displacement_mm >= 0, smoothness_mm > 0) pairs, got {self.extra_scales}")
        object.__setattr__(self, "extra_scales", scales)


#: Large, smooth deformations, small, more local ones, and larger multi-scale ones (a global component up to
#: 32 mm with 32 mm smoothness plus 12 mm / 12 mm and 6 mm / 8 mm components: MICDIR's claim experiment).
DEFORMATIONS: dict[str, DeformationSpec] = {
    "large": DeformationSpec(max_displacement_mm=8.0, smoothness_mm=16.0),
    "small": DeformationSpec(max_displacement_mm=3.0, smoothness_mm=8.0),
    "multiscale": DeformationSpec(max_displacement_mm=32.0, smoothness_mm=32.0, extra_scales=((12.0, 12.0), (6.0, 8.0))),
}


@dataclass(frozen=True)
class IntensitySpec:
    """Per-image intensity changes: multiplicative bias field, gamma, Gaussian noise, then normalisation.

    ``bias_strength`` is the standard deviation of the bias field's logarithm (see
    :func:`medseg.data.synthetic.bias_field`), smoothed with a Gaussian of ``bias_smoothness_mm``.
    """

    bias_strength: float = 0.12
    bias_smoothness_mm: float = 32.0
    gamma_range: tuple[float, float] = (0.75, 1.35)
    noise_std: float = 0.02


def random_deformation(
    shape: Sequence[int], spacing_mm: Sequence[float], spec: DeformationSpec, rng: np.random.Generator
) -> np.ndarray:
    """``(3, *shape)`` pull-back displacement (voxels) of a random diffeomorphism (see :class:`DeformationSpec`)."""
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    velocity_mm = _velocity_component(shape, spacing, spec.max_displacement_mm, spec.smoothness_mm, rng)
    for max_displacement_mm, smoothness_mm in spec.extra_scales:
        velocity_mm += _velocity_component(shape, spacing, max_displacement_mm, smoothness_mm, rng)
    velocity = velocity_mm / spacing.astype(np.float32)[:, None, None, None]
    integrate = DiffeomorphicIntegration(spec.integration_steps, downsize=1, padding_mode="border")
    with torch.no_grad():
        flow = integrate(torch.from_numpy(velocity)[None])[0]
    angles = np.deg2rad(rng.uniform(-1, 1, 3) * spec.max_rotation_deg)
    scales = 1.0 + rng.uniform(-1, 1, 3) * spec.max_scaling
    if spec.max_rotation_deg or spec.max_scaling:
        matrix = torch.from_numpy(_rotation(angles) @ np.diag(scales)).float()
        # world-isotropic rotation expressed in voxels: S^-1 R S with S = diag(spacing)
        s = torch.from_numpy(spacing).float()
        matrix = matrix * s[None, :] / s[:, None]
        centre = (torch.tensor([float(n) for n in shape]) - 1) / 2
        points = identity_grid(shape) + flow - centre.view(3, 1, 1, 1)
        flow = torch.einsum("ij,j...->i...", matrix, points) + centre.view(3, 1, 1, 1) - identity_grid(shape)
    return flow.numpy().astype(np.float32)


def _velocity_component(
    shape: Sequence[int], spacing: np.ndarray, max_displacement_mm: float, smoothness_mm: float, rng: np.random.Generator
) -> np.ndarray:
    """``(3, *shape)`` smoothed white noise (mm) whose largest vector is ``U(0.5, 1) * max_displacement_mm``."""
    velocity_mm = smooth_noise((3, *shape), [0.0, *(smoothness_mm / spacing)], rng)
    amplitude = rng.uniform(0.5, 1.0) * max_displacement_mm
    velocity_mm *= np.float32(amplitude / max(float(np.sqrt((velocity_mm**2).sum(0)).max()), 1e-6))
    return velocity_mm


def _rotation(angles: np.ndarray) -> np.ndarray:
    (a, b, c), (ca, cb, cc) = np.sin(angles), np.cos(angles)
    rx = np.array([[1, 0, 0], [0, ca, -a], [0, a, ca]])
    ry = np.array([[cb, 0, b], [0, 1, 0], [-b, 0, cb]])
    rz = np.array([[cc, -c, 0], [c, cc, 0], [0, 0, 1]])
    return rz @ ry @ rx


_NORMALISE = ScaleIntensityRangePercentiles(lower=0.01, upper=99.99, b_min=0.0, b_max=1.0, clip=True)


def apply_intensity(
    image: np.ndarray, spacing_mm: Sequence[float], spec: IntensitySpec, rng: np.random.Generator
) -> np.ndarray:
    """Bias field (``exp`` of a smooth field in +/- ``bias_strength``), gamma, noise, percentile min-max to [0, 1]."""
    sigma = [spec.bias_smoothness_mm / float(s) for s in spacing_mm]
    out = np.clip(image * bias_field(image.shape, rng, spec.bias_strength, sigma), 0.0, None)
    out = (out / max(float(out.max()), 1e-6)) ** rng.uniform(*spec.gamma_range)
    out = out + rng.normal(0.0, spec.noise_std, size=out.shape)
    return np.asarray(_NORMALISE(out.astype(np.float32)), dtype=np.float32)


def synthesise_contrast(contrast: str, t1: np.ndarray, gm: np.ndarray, wm: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """``"t1"``: the template intensities; ``"t2"``: a tissue mixture with :data:`T2_INTENSITIES`, in the brain."""
    if contrast == "t1":
        return t1
    if contrast == "t2":
        other = np.clip(brain - gm - wm, 0.0, 1.0)
        csf, grey, white = T2_INTENSITIES
        return (csf * other + grey * gm + white * wm).astype(np.float32)
    raise ValueError(f"contrast must be one of {', '.join(CONTRASTS)}, got {contrast!r}")


@dataclass(frozen=True)
class RegistrationPair:
    """A fixed/moving pair on the template grid with labels and the ground-truth template deformations.

    Attributes:
        fixed / moving: ``(I, J, K)`` float32 images in [0, 1].
        fixed_labels / moving_labels: ``(I, J, K)`` uint8 tissue labels (:data:`TISSUE_LABELS`).
        affine: 4x4 voxel-to-RAS+ (mm) of both.
        fixed_flow / moving_flow: ``(3, I, J, K)`` pull-back displacements (voxels) from each image's grid
            into the template (zero for a fixed image that is the template).
        fixed_contrast / moving_contrast: ``"t1"`` or ``"t2"``.
    """

    fixed: np.ndarray
    moving: np.ndarray
    fixed_labels: np.ndarray
    moving_labels: np.ndarray
    affine: np.ndarray
    fixed_flow: np.ndarray
    moving_flow: np.ndarray
    fixed_contrast: str
    moving_contrast: str


def make_subject(
    template: MNI152Template,
    contrast: str,
    deformation: DeformationSpec | None,
    intensity: IntensitySpec | None,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic subject: ``(image, labels, flow)``; ``deformation=None`` keeps the template's shape."""
    spacing = template.spacing
    flow = (
        random_deformation(template.shape, spacing, deformation, rng)
        if deformation is not None
        else np.zeros((3, *template.shape), dtype=np.float32)
    )
    maps = torch.from_numpy(np.stack([template.t1, template.gm, template.wm, template.brain]))[None]
    flow_t = torch.from_numpy(flow)[None]
    with torch.no_grad():
        t1, gm, wm, brain = warp(maps, flow_t)[0].numpy()
        labels = warp_labels(torch.from_numpy(template.labels)[None, None], flow_t)[0, 0].numpy()
    image = synthesise_contrast(contrast, t1, gm, wm, brain)
    if intensity is not None:
        image = apply_intensity(image, spacing, intensity, rng)
    return image.astype(np.float32), labels.astype(np.uint8), flow


def make_pair(
    seed: int,
    template: MNI152Template | None = None,
    fixed_contrast: str = "t1",
    moving_contrast: str = "t1",
    deformation: str | DeformationSpec = "large",
    intensity: IntensitySpec | None = IntensitySpec(),
    fixed_is_template: bool = False,
) -> RegistrationPair:
    """A fixed/moving pair: two independently deformed subjects (or the template and one subject).

    Args:
        seed: the pair is a pure function of it (and of the other arguments).
        template: from :func:`load_mni152` (default: 2 mm, 96^3).
        fixed_contrast / moving_contrast: ``"t1"`` or ``"t2"`` (T1 fixed, T2 moving is intermodal as in
            the paper).
        deformation: ``"large"``, ``"small"``, ``"multiscale"`` (:data:`DEFORMATIONS`) or a :class:`DeformationSpec`.
        intensity: intensity changes (None: raw synthesised intensities, no normalisation).
        fixed_is_template: the fixed image is the undeformed template (atlas registration).

    Example:
        >>> pair = make_pair(0, load_mni152(6, shape=(32, 32, 32)), moving_contrast="t2")  # doctest: +SKIP
    """
    template = template if template is not None else load_mni152()
    spec = DEFORMATIONS[deformation] if isinstance(deformation, str) else deformation
    if isinstance(deformation, str) and deformation not in DEFORMATIONS:
        raise ValueError(f"deformation must be one of {', '.join(DEFORMATIONS)}, got {deformation!r}")
    fixed_rng, moving_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    fixed, fixed_labels, fixed_flow = make_subject(
        template, fixed_contrast, None if fixed_is_template else spec, intensity, fixed_rng
    )
    moving, moving_labels, moving_flow = make_subject(template, moving_contrast, spec, intensity, moving_rng)
    return RegistrationPair(
        fixed, moving, fixed_labels, moving_labels, template.affine.copy(), fixed_flow, moving_flow,
        fixed_contrast, moving_contrast,
    )


def write_pairs(
    folder: str | Path,
    n_pairs: int,
    seed: int = 0,
    template: MNI152Template | None = None,
    force: bool = False,
    n_test: int = 0,
    **pair_kwargs: object,
) -> Path:
    """Write ``n_pairs`` pairs as NIfTI and a ``pairs.json`` index; returns the index's path.

    Layout: ``pair_000/{fixed,moving,fixed_labels,moving_labels}.nii.gz``; ``pairs.json`` holds
    ``{"labels": {...}, "pairs": [{"fixed": ..., "moving": ..., "fixed_labels": ..., "moving_labels": ...,
    "fixed_contrast": ..., "moving_contrast": ...}, ...]}`` with paths relative to ``folder``. Pair ``i``
    is ``make_pair(seed=SeedSequence([seed, i]))``, so a longer list starts with the same pairs. The
    ``n_test`` held-out pairs continue the sequence (``i = n_pairs ...``) under ``"test"`` (``test_000/``).

    Args:
        folder: output folder (written atomically; an existing one needs ``force``).
        n_test: held-out pairs written after the training pairs.
        pair_kwargs: passed to :func:`make_pair` (contrasts, deformation, intensity, ...).
    """
    from medseg.io import Geometry, atomic_dir, write_image, write_json
    from medseg.io.image_io import Kind

    if n_pairs < 1:
        raise ValueError(f"n_pairs must be positive, got {n_pairs}")
    template = template if template is not None else load_mni152()
    folder = Path(folder)
    sections: dict[str, list[dict[str, str]]] = {"pairs": [], "test": []}
    with atomic_dir(folder, force=force) as tmp:
        for i in range(n_pairs + n_test):
            pair_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
            pair = make_pair(pair_seed, template, **pair_kwargs)  # type: ignore[arg-type]  # YAML options, checked by make_pair
            geometry = Geometry(shape=pair.fixed.shape, affine=pair.affine)
            section, name = ("pairs", f"pair_{i:03d}") if i < n_pairs else ("test", f"test_{i - n_pairs:03d}")
            entry = {"name": name, "fixed_contrast": pair.fixed_contrast, "moving_contrast": pair.moving_contrast}
            kinds: dict[str, Kind] = {"fixed": "image", "moving": "image", "fixed_labels": "label", "moving_labels": "label"}
            for key, kind in kinds.items():
                rel = f"{name}/{key}.nii.gz"
                write_image(tmp / rel, getattr(pair, key), geometry, kind=kind)
                entry[key] = rel
            sections[section].append(entry)
        labels = {str(k): v for k, v in TISSUE_LABELS.items()}
        write_json(tmp / "pairs.json", {"labels": labels, **{k: v for k, v in sections.items() if v or k == "pairs"}})
    return folder / "pairs.json"
