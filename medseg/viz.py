"""PNG previews: three orthogonal slices (axial, coronal, sagittal) with the label map overlaid."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseg.io.atomic import atomic_path
from medseg.io.geometry import Geometry, reorient
from medseg.palette import LABEL_COLOURS


def _centre(labels: np.ndarray) -> tuple[int, ...]:
    fg = np.argwhere(labels > 0)
    if len(fg) == 0:
        return tuple(s // 2 for s in labels.shape)
    return tuple(int(v) for v in np.round(fg.mean(axis=0)))


def save_preview(
    path: str | Path, image: np.ndarray, labels: np.ndarray | None, geometry: Geometry, title: str = "", window: tuple[float, float] | None = None
) -> Path:
    """Write a PNG of the image (and labels) through the centre of the labelled region.

    Slices are shown in RAS order (neurological convention: the patient's left on the left), with the
    true voxel aspect ratio.

    Args:
        image: ``(I, J, K)`` image in ``geometry`` (first channel of a multi-modal case).
        labels: ``(I, J, K)`` label map in the same geometry, or ``None``.
        window: display intensity range (default: 1st-99th percentile).
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend (e.g. a notebook's) alone

    img, affine = reorient(np.asarray(image, dtype=np.float32), geometry.affine, "RAS")
    lab = reorient(np.asarray(labels), geometry.affine, "RAS")[0] if labels is not None else np.zeros(img.shape, np.uint8)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    lo, hi = window or tuple(np.percentile(img, [1, 99]))
    cx, cy, cz = _centre(lab)
    views = [
        ("axial", img[:, :, cz].T, lab[:, :, cz].T, spacing[1] / spacing[0]),
        ("coronal", img[:, cy, :].T, lab[:, cy, :].T, spacing[2] / spacing[0]),
        ("sagittal", img[cx, :, :].T, lab[cx, :, :].T, spacing[2] / spacing[1]),
    ]
    colours = ListedColormap(list(LABEL_COLOURS))
    fig = Figure(figsize=(11, 4), dpi=100)
    axes = fig.subplots(1, 3)
    for ax, (name, im, lb, aspect) in zip(axes, views):
        ax.imshow(im, cmap="gray", vmin=lo, vmax=hi, origin="lower", aspect=aspect, interpolation="nearest")
        colour_index = np.ma.masked_where(lb == 0, (lb.astype(np.int64) - 1) % 7 + 1)
        ax.imshow(colour_index, cmap=colours, vmin=0, vmax=7, alpha=0.45, origin="lower", aspect=aspect, interpolation="nearest")
        ax.set_title(name)
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)
