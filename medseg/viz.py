"""Radiological preview figures: three orthogonal planes (or rows of axial slices) with the labels overlaid.

Every figure follows the radiological convention of PACS viewers: axial slices seen from the feet and
coronal slices seen from the front, so the patient's right is on the image's left; sagittal slices
have anterior on the left. Each panel carries orientation letters on all four edges and its slice
position in mm (RAS world coordinates), panels share one scale in mm (true aspect ratio for
anisotropic voxels), and a legend names every label with its colour (:mod:`medseg.palette`, Okabe-Ito)
and volume in ml. The intensity window is printed under the figure.

Arrays are reoriented to the nearest RAS axes (:func:`medseg.io.geometry.reorient`); an oblique
acquisition is shown in its nearest anatomical voxel planes, and the figure says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg.io.atomic import atomic_path
from medseg.io.geometry import Geometry, reorient
from medseg.palette import label_colour

#: CT soft-tissue window (width 400 HU, level 40 HU), the default for CT images
CT_SOFT_TISSUE = (-160.0, 240.0)
LAYOUTS = ("orthogonal", "axial")
STYLES = ("fill", "outline")
#: (left, right, top, bottom) orientation letters of each plane in radiological display
LETTERS = {"axial": "RLAP", "coronal": "RLSI", "sagittal": "APSI"}
_FIG_WIDTH = 12.0  # inches
_GAP = 0.45  # inches between panels (room for the orientation letters)


@dataclass
class Panel:
    """One displayed slice: ``image``/``labels`` ``(rows, cols)`` as shown (row 0 on top), pixel size in mm."""

    title: str
    plane: str
    image: np.ndarray
    labels: np.ndarray
    pixel_mm: tuple[float, float]  # (row height, column width)

    @property
    def size_mm(self) -> tuple[float, float]:
        return self.image.shape[0] * self.pixel_mm[0], self.image.shape[1] * self.pixel_mm[1]


def display_window(image: np.ndarray, window: tuple[float, float] | None = None, modality: str | None = None) -> tuple[float, float, str]:
    """``(low, high, description)`` of the intensity window: ``window`` if given, the CT soft-tissue
    window for CT (``modality="CT"``, or values below -500 that only Hounsfield units reach), else the
    1st-99th percentile of the voxels above the image minimum (MR and other images)."""
    if window is not None:
        lo, hi = float(window[0]), float(window[1])
        return lo, hi, f"window W {hi - lo:g} L {(hi + lo) / 2:g}"
    modality = (modality or "").upper()
    if modality == "CT" or (not modality and float(np.min(image)) <= -500.0):
        return CT_SOFT_TISSUE[0], CT_SOFT_TISSUE[1], "CT soft-tissue window W 400 L 40 HU"
    values = image[image > image.min()] if np.any(image > image.min()) else image.ravel()
    lo, hi = (float(v) for v in np.percentile(values, [1, 99]))
    return lo, max(hi, lo + 1e-6), f"window {lo:.4g} to {hi:.4g} (1st-99th percentile)"


def _show(plane2d: np.ndarray) -> np.ndarray:
    """``(a, b)`` RAS slice -> displayed ``(rows, cols)``: rows from superior/anterior down, columns
    from patient right (axial, coronal) or anterior (sagittal) to the other side."""
    return np.ascontiguousarray(plane2d.T[::-1, ::-1])


def label_centre(labels: np.ndarray) -> tuple[int, ...]:
    fg = np.argwhere(labels > 0)
    if len(fg) == 0:
        return tuple(s // 2 for s in labels.shape)
    return tuple(int(v) for v in np.round(fg.mean(axis=0)))


def _world(affine: np.ndarray, index: tuple[int, int, int]) -> np.ndarray:
    return (affine @ np.array([*index, 1.0]))[:3]


def orthogonal_panels(img: np.ndarray, lab: np.ndarray, affine: np.ndarray) -> list[Panel]:
    """Axial, coronal and sagittal panels through the centre of the labelled region (RAS arrays)."""
    sx, sy, sz = np.linalg.norm(affine[:3, :3], axis=0)
    cx, cy, cz = label_centre(lab)
    x, y, z = _world(affine, (cx, cy, cz))
    return [
        Panel(f"axial  z = {z:.1f} mm", "axial", _show(img[:, :, cz]), _show(lab[:, :, cz]), (sy, sx)),
        Panel(f"coronal  y = {y:.1f} mm", "coronal", _show(img[:, cy, :]), _show(lab[:, cy, :]), (sz, sx)),
        Panel(f"sagittal  x = {x:.1f} mm", "sagittal", _show(img[cx, :, :]), _show(lab[cx, :, :]), (sz, sy)),
    ]


def axial_rows(img: np.ndarray, lab: np.ndarray, affine: np.ndarray, names: dict[int, str], per_row: int = 5) -> list[list[Panel]]:
    """One row of ``per_row`` axial slices evenly spread over each present label's extent (RAS arrays)."""
    sx, sy, _ = np.linalg.norm(affine[:3, :3], axis=0)
    rows = []
    values = [int(v) for v in np.unique(lab) if v != 0] or [0]
    for value in values:
        ks = np.nonzero(np.any(lab == value, axis=(0, 1)))[0] if value else np.arange(lab.shape[2])
        picks = sorted({int(round(k)) for k in np.linspace(ks.min(), ks.max(), per_row)})
        name = names.get(value, f"label {value}") if value else "no labels"
        rows.append([
            Panel(f"{name}  z = {_world(affine, (0, 0, k))[2]:.1f} mm", "axial", _show(img[:, :, k]), _show(lab[:, :, k]), (sy, sx))
            for k in picks
        ])
    return rows


def _edges(labels: np.ndarray) -> np.ndarray:
    """Label values on the outline of each region (``0`` elsewhere): pixels with a differing 4-neighbour."""
    padded = np.pad(labels, 1, mode="edge")
    centre = padded[1:-1, 1:-1]
    differs = np.zeros(labels.shape, bool)
    for shifted in (padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]):
        differs |= shifted != centre
    return np.where(differs & (labels != 0), labels, 0)


def _overlay(labels: np.ndarray, style: str, alpha: float) -> np.ndarray:
    """RGBA ``(rows, cols, 4)`` overlay of a label slice (transparent background)."""
    shown = _edges(labels) if style == "outline" else labels
    values = [int(v) for v in np.unique(shown) if v != 0]
    rgba = np.zeros((*labels.shape, 4), np.float32)
    for value in values:
        rgba[shown == value] = (*(c / 255 for c in label_colour(value)), 1.0 if style == "outline" else alpha)
    return rgba


def _obliquity_deg(affine: np.ndarray) -> float:
    """Largest angle (degrees) between a voxel axis and its nearest anatomical axis."""
    cosines = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    return float(np.degrees(np.arccos(np.clip(np.abs(cosines).max(axis=0), -1, 1))).max())


def _draw_panel(fig: Any, rect: tuple[float, float, float, float], panel: Panel, window: tuple[float, float], style: str, alpha: float) -> Any:
    ax = fig.add_axes(rect)
    h, w = panel.size_mm
    extent = (0.0, w, h, 0.0)
    ax.imshow(panel.image, cmap="gray", vmin=window[0], vmax=window[1], extent=extent, aspect="auto", interpolation="nearest")
    if np.any(panel.labels):
        ax.imshow(_overlay(panel.labels, style, alpha), extent=extent, aspect="auto", interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(panel.title, fontsize=9, pad=17)
    left, right, top, bottom = tuple(LETTERS[panel.plane])
    style_kw = {"transform": ax.transAxes, "fontsize": 10, "fontweight": "bold", "color": "#333333"}
    ax.text(-0.015, 0.5, left, ha="right", va="center", **style_kw)
    ax.text(1.015, 0.5, right, ha="left", va="center", **style_kw)
    ax.text(0.5, 1.01, top, ha="center", va="bottom", **style_kw)
    ax.text(0.5, -0.01, bottom, ha="center", va="top", **style_kw)
    return ax


def label_volumes(labels: np.ndarray, geometry: Geometry, names: dict[int, str] | None = None) -> list[tuple[int, str, float]]:
    """``(value, name, volume ml)`` of every named label and every value present (background excluded)."""
    voxel_ml = float(np.prod(geometry.spacing)) / 1000.0
    counts = np.bincount(np.asarray(labels).ravel().astype(np.int64)) if labels.size else np.zeros(1, np.int64)
    values = sorted({v for v in (names or {}) if v != 0} | {int(v) for v in np.nonzero(counts)[0] if v != 0})
    return [(v, (names or {}).get(v, f"label {v}"), float(counts[v]) * voxel_ml if v < len(counts) else 0.0) for v in values]


def preview_figure(
    image: np.ndarray, labels: np.ndarray | None, geometry: Geometry, *, names: dict[int, str] | None = None, title: str = "",
    window: tuple[float, float] | None = None, modality: str | None = None, layout: str = "orthogonal", style: str = "fill",
    alpha: float = 0.45, per_row: int = 5,
) -> Any:
    """The preview as a matplotlib ``Figure`` (no pyplot: a notebook's backend is left alone).

    Args:
        image: ``(I, J, K)`` image in ``geometry`` (first channel of a multi-modal case).
        labels: ``(I, J, K)`` label map in the same geometry, or ``None``.
        names: label value -> name for the legend (default ``label v``).
        window: display intensity range (default: see :func:`display_window`).
        modality: ``"CT"``/``"MR"`` to choose the default window (default: guessed from the values).
        layout: ``orthogonal`` (three planes through the labels' centre) or ``axial`` (a row of
            ``per_row`` axial slices through each label's extent).
        style: ``fill`` (semi-transparent, ``alpha``) or ``outline``.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    if layout not in LAYOUTS or style not in STYLES:
        raise ValueError(f"layout must be one of {LAYOUTS} and style one of {STYLES}, got {layout!r}, {style!r}")
    img, affine = reorient(np.asarray(image, dtype=np.float32), geometry.affine, "RAS")
    lab = reorient(np.asarray(labels), geometry.affine, "RAS")[0] if labels is not None else np.zeros(img.shape, np.uint8)
    lo, hi, window_text = display_window(img, window, modality)
    rows = [orthogonal_panels(img, lab, affine)] if layout == "orthogonal" else axial_rows(img, lab, affine, names or {}, per_row)

    # one scale (inches per mm) for every panel, so sizes and aspect ratios are true
    widest = max(sum(p.size_mm[1] for p in row) for row in rows)
    most = max(len(row) for row in rows)
    scale = (_FIG_WIDTH - 0.6 - _GAP * (most - 1)) / widest
    heights = [max(p.size_mm[0] for p in row) * scale for row in rows]
    if sum(heights) > 7.5 * len(rows) ** 0.5:  # very tall volumes: shrink to keep the figure on a screen
        factor = 7.5 * len(rows) ** 0.5 / sum(heights)
        scale, heights = scale * factor, [h * factor for h in heights]
    top, row_gap, bottom = (0.75 if title else 0.3) + 0.3, 0.55, 1.3
    fig_h = top + sum(heights) + row_gap * (len(rows) - 1) + bottom
    fig = Figure(figsize=(_FIG_WIDTH, fig_h), dpi=100, facecolor="white")
    y = fig_h - top
    for row, height in zip(rows, heights):
        width = sum(p.size_mm[1] for p in row) * scale + _GAP * (len(row) - 1)
        x = (_FIG_WIDTH - width) / 2
        for panel in row:
            ph, pw = panel.size_mm[0] * scale, panel.size_mm[1] * scale
            _draw_panel(fig, (x / _FIG_WIDTH, (y - ph) / fig_h, pw / _FIG_WIDTH, ph / fig_h), panel, (lo, hi), style, alpha)
            x += pw + _GAP
        y -= height + row_gap
    if title:
        fig.suptitle(title, y=1 - 0.3 / fig_h, va="top", fontsize=12)

    entries = label_volumes(lab, geometry, names)
    if entries:
        rgb = {v: (r / 255, g / 255, b / 255) for v, _, _ in entries for r, g, b in [label_colour(v)]}
        handles = [Patch(facecolor=rgb[v] if style == "fill" else "none", edgecolor=rgb[v],
                         linewidth=2, label=f"{v}  {name}: {ml:.1f} ml") for v, name, ml in entries]
        fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.45 / fig_h), ncol=min(4, len(handles)), fontsize=9, frameon=False)
    spacing = "x".join(f"{s:.3g}" for s in geometry.spacing)
    notes = [window_text, "radiological convention: patient's right on the image's left (axial, coronal)", f"voxel {spacing} mm, positions in RAS mm"]
    oblique = _obliquity_deg(geometry.affine)
    if oblique > 1.0:
        notes.append(f"oblique ({oblique:.0f}°): nearest anatomical planes shown")
    fig.text(0.5, 0.12 / fig_h, "   ·   ".join(notes), ha="center", va="bottom", fontsize=8, color="#444444")
    return fig


def save_preview(
    path: str | Path, image: np.ndarray, labels: np.ndarray | None, geometry: Geometry, title: str = "",
    window: tuple[float, float] | None = None, **options: Any,
) -> Path:
    """Write :func:`preview_figure` as a PNG (atomically); ``options`` are its keyword arguments."""
    fig = preview_figure(image, labels, geometry, title=title, window=window, **options)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


__all__ = ["CT_SOFT_TISSUE", "LAYOUTS", "STYLES", "Panel", "display_window", "label_centre", "label_volumes", "preview_figure", "save_preview"]
