"""Lumbar spine phantom with Dixon contrasts (fat, in-phase, opposed-phase, water): IVD-Net's synthetic data.

A column of vertebral bodies and intervertebral discs (label 1 = disc, as in IVDM3Seg) inside a body with
paraspinal muscle, a CSF-filled canal, posterior elements, subcutaneous fat and abdominal distractors
(fluid-filled and fatty blobs). Every tissue has a proton density (PD) and a fat fraction (FF); the four
images come from one simulated two-point Dixon acquisition:

- complex in-phase ``S_ip = (W + F) e^{i phi}`` and opposed-phase ``S_op = (W - F) e^{i phi}`` signals with
  ``W = PD (1 - FF)``, ``F = PD FF``, times one smooth bias field (one coil, one acquisition), plus complex
  Gaussian noise;
- magnitude images ``inn = |S_ip|``, ``opp = |S_op|``, ``wat = |S_ip + S_op| / 2``, ``fat = |S_ip - S_op| / 2``
  (so noise is correlated across the four images as in a real Dixon reconstruction; magnitudes are Rician).

The modalities are complementary: discs are water-bright with a bright nucleus and a darker annulus, dark
in the fat image; marrow is fat-bright; CSF and abdominal fluid are water-bright like discs; cortical
endplates are dark in all four. Degenerated discs (lower water content, thinner) make the water image alone
ambiguous. Built from the shared blocks of :mod:`medseg.data.synthetic`.

In a real Dixon series the four images are functions of the same water and fat signals, so any two of them
hold nearly all the information. Option ``complementary`` (default off) breaks that on purpose, for IVD-Net's
claim experiment (issue 17: "no single channel suffices"): each image shows the discs only in some places.
Everywhere, ``complementary_visible`` of the four images (2 by default) show the disc; the others show, in
its place, vertebral marrow continuing through the disc and over the adjacent endplates (the same tissue in
the same acquisition: same bias field, phase and noise). Which images show it changes over smooth random
regions about ``complementary_scale_mm`` across, so one disc is visible in different images in different
places (:func:`visibility_weights`). The label is unchanged.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from medseg.data.registry import register_phantom
from medseg.data.synthetic import bias_field, irregular_blob, physical_grid, ras_affine, save_nifti, smooth_noise
from medseg.io.atomic import write_json
from medseg.io.geometry import reorient

#: Dixon images in the order of the IVDM3Seg release and of the authors' loader.
DIXON_MODALITIES = ("fat", "inn", "opp", "wat")
#: Sagittal acquisitions stored in several conventions, so every dataset exercises re-orientation.
SPINE_ORIENTATIONS = ("RAS", "PIL", "LPS", "ASR")


@dataclass(frozen=True)
class SpinePhantomSpec:
    """Parameters of :func:`spine_phantom` (lengths in mm, ranges are sampled per case).

    The left-right axis is the (thick) slice axis of a sagittal acquisition, as in IVDM3Seg
    (2 mm slices, 1.25 mm in-plane); the defaults are coarser so that CPU training takes minutes.
    """

    n_discs: int = 7
    field_of_view_mm: tuple[float, float, float] = (48.0, 96.0, 224.0)
    slice_thickness_mm: tuple[float, float] = (3.5, 4.5)
    in_plane_spacing_mm: tuple[float, float] = (1.8, 2.2)
    vertebra_height_mm: tuple[float, float] = (17.0, 21.0)
    disc_height_mm: tuple[float, float] = (7.0, 10.0)
    degenerated_fraction: float = 0.3
    fluid_blobs: tuple[int, int] = (1, 3)
    noise: float = 0.03
    bias_strength: float = 0.25
    complementary: bool = False  # each image shows the discs only in some places (module docstring)
    complementary_visible: int = 2  # how many of the 4 images show the disc at each place
    complementary_scale_mm: float = 12.0  # smoothing of the random fields that choose them (Gaussian sigma)

    @classmethod
    def from_options(cls, **options: Any) -> SpinePhantomSpec:
        """Spec from YAML ``data.synthetic.options`` (lists become tuples); unknown keys are errors."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown spine phantom option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
        return cls(**values)


@dataclass
class _Tissue:
    """Proton density and fat fraction maps being painted, ``(I, J, K)`` float32."""

    pd: np.ndarray
    ff: np.ndarray

    def paint(self, mask: np.ndarray, pd: float | np.ndarray, ff: float | np.ndarray) -> None:
        self.pd[mask] = pd if np.isscalar(pd) else np.asarray(pd)[mask]
        self.ff[mask] = ff if np.isscalar(ff) else np.asarray(ff)[mask]


def _column_centre(z: np.ndarray, length: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Lordotic curve of the column: centre ``(x, y)`` in mm as functions of ``z`` (broadcastable)."""
    lordosis = rng.uniform(3.0, 8.0)
    lateral = rng.uniform(-2.0, 2.0)
    y0 = rng.uniform(-2.0, 4.0)
    t = z / (length / 2.0)
    return lateral * t, y0 + lordosis * np.cos(np.pi * t / 2.0)


def _levels(spec: SpinePhantomSpec, rng: np.random.Generator) -> tuple[list[tuple[float, float]], list[tuple[float, float, bool]]]:
    """Vertebrae ``(centre_z, height)`` and discs ``(centre_z, height, degenerated)`` from bottom to top."""
    heights_v = rng.uniform(*spec.vertebra_height_mm, size=spec.n_discs + 1)
    degenerated = rng.random(spec.n_discs) < spec.degenerated_fraction
    heights_d = rng.uniform(*spec.disc_height_mm, size=spec.n_discs) * np.where(degenerated, 0.7, 1.0)
    total = heights_v.sum() + heights_d.sum()
    z = -total / 2.0 + rng.uniform(-4.0, 4.0)
    vertebrae, discs = [], []
    for level in range(spec.n_discs + 1):
        vertebrae.append((z + heights_v[level] / 2.0, float(heights_v[level])))
        z += heights_v[level]
        if level < spec.n_discs:
            discs.append((z + heights_d[level] / 2.0, float(heights_d[level]), bool(degenerated[level])))
            z += heights_d[level]
    return vertebrae, discs


def _body_and_soft_tissue(tissue: _Tissue, grid: list[np.ndarray], shape: tuple[int, ...], canal_y: float,
                          spacing: Sequence[float], rng: np.random.Generator) -> None:
    """Air outside, subcutaneous fat at the back, muscle, abdominal fat and fluid in front."""
    _, y, _ = grid
    back = canal_y - rng.uniform(28.0, 34.0)
    fat_layer = rng.uniform(6.0, 10.0)
    inside = np.broadcast_to(y > back, shape)
    tissue.paint(inside, 0.9, 0.92)  # subcutaneous fat
    muscle = np.broadcast_to(y > back + fat_layer, shape)
    ff_muscle = np.clip(0.07 + 0.03 * smooth_noise(shape, [4.0 / s for s in spacing], rng), 0.0, 0.3)
    tissue.paint(muscle, 0.7, ff_muscle)
    for _ in range(rng.integers(2, 5)):  # abdominal fat in front of the column
        centre = (rng.uniform(-20, 20), rng.uniform(30, 45), rng.uniform(-90, 90))
        blob = irregular_blob(grid, centre, (rng.uniform(10, 20), rng.uniform(6, 12), rng.uniform(15, 30)), rng, 0.3, spacing)
        tissue.paint(blob & muscle, 0.85, rng.uniform(0.75, 0.9))


def _fluid_blobs(tissue: _Tissue, grid: list[np.ndarray], count: int, spacing: Sequence[float], rng: np.random.Generator) -> None:
    """Water-bright, fat-dark distractors in front of the column (bowel fluid, vessels)."""
    for _ in range(count):
        centre = (rng.uniform(-15, 15), rng.uniform(28, 42), rng.uniform(-80, 80))
        radii = (rng.uniform(5, 9), rng.uniform(3, 5), rng.uniform(3, 6))
        tissue.paint(irregular_blob(grid, centre, radii, rng, 0.2, spacing), rng.uniform(0.85, 1.0), rng.uniform(0.0, 0.03))


def _vertebra(tissue: _Tissue, grid: list[np.ndarray], centre: tuple[float, float, float], height: float,
              half_width: float, half_depth: float, marrow_ff: float, spacing: Sequence[float],
              rng: np.random.Generator) -> np.ndarray:
    """Rounded-box body with a 1.5 mm cortical shell and a posterior element; returns the body mask."""
    x, y, z = grid
    cx, cy, cz = centre
    r = np.abs((x - cx) / half_width) ** 4 + np.abs((y - cy) / half_depth) ** 4
    body = (r <= 1.0) & (np.abs(z - cz) <= height / 2.0)
    shell = 1.5 / min(half_width, half_depth)
    core = (r <= (1.0 - shell) ** 4) & (np.abs(z - cz) <= height / 2.0 - 1.5)
    tissue.paint(body, 0.15, 0.2)  # cortical bone: little signal
    ff = np.clip(marrow_ff + 0.06 * smooth_noise(body.shape, [3.0 / s for s in spacing], rng), 0.05, 0.9)
    tissue.paint(core, 0.8, ff)
    posterior = irregular_blob(grid, (cx, cy - half_depth - 22.0, cz), (6.0, 7.0, height * 0.35), rng, 0.2, spacing)
    tissue.paint(posterior, 0.55, marrow_ff)
    return body


def _disc(tissue: _Tissue, grid: list[np.ndarray], centre: tuple[float, float, float], height: float,
          half_width: float, half_depth: float, degenerated: bool, rng: np.random.Generator) -> np.ndarray:
    """Lens-shaped disc: water-rich nucleus, denser annulus (both fat-poor); returns the disc mask."""
    x, y, z = grid
    cx, cy, cz = centre
    r2 = ((x - cx) / half_width) ** 2 + ((y - cy) / half_depth) ** 2
    bulge = np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
    disc = (r2 <= 1.0) & (np.abs(z - cz) <= height / 2.0 * (0.7 + 0.3 * bulge) + 0.5)
    nucleus = disc & (r2 <= rng.uniform(0.3, 0.5))
    tissue.paint(disc, 0.65, 0.02)  # annulus fibrosus
    tissue.paint(nucleus, 0.7 if degenerated else rng.uniform(0.92, 1.0), 0.01)
    return disc


def spine_phantom(seed: int, spec: SpinePhantomSpec = SpinePhantomSpec()) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """One case: four Dixon images, disc labels and the RAS affine.

    Returns:
        ``(images, label, affine)``: ``images`` maps ``fat``, ``inn``, ``opp``, ``wat`` to ``(I, J, K)``
        float32 magnitude images (scanner-like scale, ~0-1000); ``label`` is ``(I, J, K)`` uint8 (1 = disc);
        axes are RAS (I = left-right = slice axis, J = posterior-anterior, K = inferior-superior).
    """
    rng = np.random.default_rng(seed)
    thick, in_plane = rng.uniform(*spec.slice_thickness_mm), rng.uniform(*spec.in_plane_spacing_mm)
    spacing = (thick, in_plane, in_plane)
    shape = tuple(max(4, int(round(f / s))) for f, s in zip(spec.field_of_view_mm, spacing))
    grid = physical_grid(shape, spacing)
    z = grid[2]
    tissue = _Tissue(np.zeros(shape, np.float32), np.zeros(shape, np.float32))

    half_width, half_depth = rng.uniform(18.0, 22.0), rng.uniform(13.0, 16.0)
    length = spec.field_of_view_mm[2]
    col_x, col_y = _column_centre(z, length, rng)
    canal_y = float(np.mean(col_y)) - half_depth - 9.0
    _body_and_soft_tissue(tissue, grid, shape, canal_y, spacing, rng)
    _fluid_blobs(tissue, grid, int(rng.integers(spec.fluid_blobs[0], spec.fluid_blobs[1] + 1)), spacing, rng)
    canal = ((grid[0] - col_x) / 8.0) ** 2 + ((grid[1] - (col_y - half_depth - 9.0)) / 6.5) ** 2 <= 1.0
    tissue.paint(np.broadcast_to(canal, shape), 1.0, 0.0)  # CSF: as water-bright as a healthy nucleus

    vertebrae, discs = _levels(spec, rng)
    centre_at = lambda cz: (float(np.interp(cz, z.ravel(), np.broadcast_to(col_x, z.shape).ravel())),  # noqa: E731
                            float(np.interp(cz, z.ravel(), np.broadcast_to(col_y, z.shape).ravel())), cz)
    bodies = []
    for cz, height in vertebrae:
        w = half_width * rng.uniform(0.95, 1.05)
        marrow_ff = rng.uniform(0.35, 0.6)
        bodies.append((_vertebra(tissue, grid, centre_at(cz), height, w, half_depth, marrow_ff, spacing, rng), marrow_ff))
    label = np.zeros(shape, np.uint8)
    disc_masks = []
    for cz, height, degenerated in discs:
        disc = _disc(tissue, grid, centre_at(cz), height, half_width * 0.95, half_depth * 0.95, degenerated, rng)
        label[disc] = 1
        disc_masks.append(disc)

    affine = ras_affine(spacing, shape)
    if not spec.complementary:
        return dixon_images(tissue.pd, tissue.ff, spacing, rng, spec.noise, spec.bias_strength), label, affine
    # own generator for the option's draws, and the same acquisition draws for both versions: the images
    # where the disc is shown equal the option-off images of this seed
    extra = np.random.default_rng([seed, 17])
    hidden = _hide_discs(tissue, disc_masks, bodies, spacing, extra)
    hidden_images = dixon_images(hidden.pd, hidden.ff, spacing, copy.deepcopy(rng), spec.noise, spec.bias_strength)
    shown_images = dixon_images(tissue.pd, tissue.ff, spacing, rng, spec.noise, spec.bias_strength)
    weights = visibility_weights(shape, spacing, extra, spec.complementary_visible, spec.complementary_scale_mm)
    images = {m: (w * shown_images[m] + (1.0 - w) * hidden_images[m]).astype(np.float32)
              for m, w in zip(DIXON_MODALITIES, weights)}
    return images, label, affine


def _hide_discs(tissue: _Tissue, discs: Sequence[np.ndarray], bodies: Sequence[tuple[np.ndarray, float]],
                spacing: Sequence[float], rng: np.random.Generator) -> _Tissue:
    """Tissue maps in which each disc and the endplates next to it are marrow of the adjacent vertebrae.

    ``discs[i]`` lies between ``bodies[i]`` and ``bodies[i + 1]`` (mask, marrow fat fraction); the endplate
    zone is the part of those bodies within ~4 mm of the disc along the column (axis 2).
    """
    hidden = _Tissue(tissue.pd.copy(), tissue.ff.copy())
    reach = max(1, int(round(4.0 / spacing[2])))
    along = np.zeros((1, 1, 3), bool)
    along[0, 0, :] = True
    for i, disc in enumerate(discs):
        (below, ff_below), (above, ff_above) = bodies[i], bodies[i + 1]
        zone = disc | (ndimage.binary_dilation(disc, along, iterations=reach) & (below | above))
        ff = np.clip((ff_below + ff_above) / 2.0 + 0.06 * smooth_noise(disc.shape, [3.0 / s for s in spacing], rng), 0.05, 0.9)
        hidden.paint(zone, 0.8, ff)
    return hidden


def visibility_weights(shape: Sequence[int], spacing: Sequence[float], rng: np.random.Generator,
                       n_visible: int = 2, scale_mm: float = 12.0) -> np.ndarray:
    """Where each Dixon image shows the discs: ``(4, I, J, K)`` float32 weights in [0, 1].

    One smooth random field per image (Gaussian sigma ``scale_mm``); at each voxel the ``n_visible`` images
    with the highest fields get weight 1, the others 0, then the edges are softened over ~1 voxel. Every
    place is shown by ``n_visible`` images; each image shows about ``n_visible / 4`` of the volume.
    """
    n = len(DIXON_MODALITIES)
    if not 1 <= n_visible <= n:
        raise ValueError(f"complementary_visible must be in [1, {n}], got {n_visible}")
    fields = np.stack([smooth_noise(shape, [scale_mm / s for s in spacing], rng) for _ in range(n)])
    rank = np.argsort(np.argsort(-fields, axis=0), axis=0)  # 0 = highest field at that voxel
    visible = (rank < n_visible).astype(np.float32)
    return np.stack([ndimage.gaussian_filter(v, [0.5 * min(spacing) / s for s in spacing]) for v in visible]).astype(np.float32)


def dixon_images(pd: np.ndarray, ff: np.ndarray, spacing: Sequence[float], rng: np.random.Generator,
                 noise: float = 0.03, bias_strength: float = 0.25, scale: float = 1000.0) -> dict[str, np.ndarray]:
    """Two-point Dixon magnitude images from proton density and fat fraction maps (see the module docstring).

    Args:
        pd, ff: ``(I, J, K)`` maps (PD in [0, 1], FF in [0, 1]).
        spacing: voxel size in mm (the point spread is ~0.7 voxel in-plane).
        noise: complex noise standard deviation relative to the PD = 1 signal (0 gives noise-free images
            with ``inn = wat + fat`` and ``opp = |wat - fat|`` exactly).
        bias_strength: amplitude of the shared multiplicative bias field (0 switches it off).

    Returns:
        ``{"fat", "inn", "opp", "wat"}`` -> ``(I, J, K)`` float32 magnitudes.
    """
    water, fat = pd * (1.0 - ff), pd * ff
    blur = [0.35, 0.7, 0.7] if spacing[0] > spacing[1] else 0.6  # partial volume, thicker along the slices
    water, fat = ndimage.gaussian_filter(water, blur), ndimage.gaussian_filter(fat, blur)
    gain = scale * (bias_field(pd.shape, rng, bias_strength) if bias_strength > 0 else np.ones(pd.shape, np.float32))
    phase = np.exp(1j * np.pi * 0.2 * smooth_noise(pd.shape, max(pd.shape) / 4.0, rng))
    s_ip, s_op = (water + fat) * gain * phase, (water - fat) * gain * phase
    if noise > 0:
        sigma = noise * scale
        s_ip = s_ip + sigma * (rng.standard_normal(pd.shape) + 1j * rng.standard_normal(pd.shape))
        s_op = s_op + sigma * (rng.standard_normal(pd.shape) + 1j * rng.standard_normal(pd.shape))
    images = {"fat": np.abs(s_ip - s_op) / 2.0, "inn": np.abs(s_ip), "opp": np.abs(s_op), "wat": np.abs(s_ip + s_op) / 2.0}
    return {name: images[name].astype(np.float32) for name in DIXON_MODALITIES}


@register_phantom("spine_dixon")
def make_spine_dataset(
    root: str | Path,
    n_train: int,
    n_test: int = 1,
    seed: int = 0,
    orientations: Sequence[str] = SPINE_ORIENTATIONS,
    **options: Any,
) -> Path:
    """Write a Decathlon-style spine phantom dataset with one file per Dixon image.

    Files are ``images{Tr,Ts}/spine_NNN_{fat,inn,opp,wat}.nii.gz`` and ``labels{Tr,Ts}/spine_NNN.nii.gz``
    (the modality is in the file name, so ``medseg predict`` can check the order); case ``i`` is stored in
    orientation ``orientations[i % len(orientations)]``. ``options`` are :class:`SpinePhantomSpec` fields.

    Returns:
        The written ``dataset.json`` (modalities fat, inn, opp, wat; labels 0 background, 1 disc).
    """
    spec = SpinePhantomSpec.from_options(**options)
    root = Path(root)
    training: list[dict[str, Any]] = []
    test: list[dict[str, Any]] = []
    for index in range(n_train + n_test):
        images, label, affine = spine_phantom(seed * 10_000 + index, spec)
        code = orientations[index % len(orientations)]
        split = "Tr" if index < n_train else "Ts"
        name = f"spine_{index:03d}"
        paths = []
        for modality, image in images.items():
            data, affine_o = reorient(image, affine, code)
            save_nifti(root / f"images{split}" / f"{name}_{modality}.nii.gz", data, affine_o)
            paths.append(f"./images{split}/{name}_{modality}.nii.gz")
        label_o, affine_o = reorient(label, affine, code)
        save_nifti(root / f"labels{split}" / f"{name}.nii.gz", label_o, affine_o)
        entry = {"image": paths, "label": f"./labels{split}/{name}.nii.gz"}
        (training if split == "Tr" else test).append(entry)
    dataset = {
        "name": "medseg spine Dixon phantom",
        "description": "Synthetic lumbar spine, Dixon fat/in-phase/opposed-phase/water images, disc labels (medseg.data.spine_phantom)",
        "tensorImageSize": "3D",
        "modality": {str(i): m for i, m in enumerate(DIXON_MODALITIES)},
        "labels": {"0": "background", "1": "disc"},
        "numTraining": len(training),
        "numTest": len(test),
        "training": training,
        "test": [{"image": t["image"]} for t in test],
        "medseg_test_labels": test,
    }
    return write_json(root / "dataset.json", dataset)
