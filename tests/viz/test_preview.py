"""The preview is a radiological figure: a marker on the patient's LEFT lands on the picture's right in
axial and coronal planes (anterior on top / left, superior on top) for RAS, LPS and oblique inputs; the
rendered PNG's pixels are analysed, not the code's intentions."""

from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib.image import imread

from medseg.io.geometry import Geometry, reorient
from medseg.palette import label_colour
from medseg.viz import display_window, preview_figure, save_preview

N = 32
SPACING = (1.0, 1.5, 3.0)  # anisotropic on purpose
NAMES = {1: "left marker", 2: "anterior marker", 3: "superior marker", 4: "centre"}


def phantom() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image, labels and affine in RAS voxel order: slabs on the patient's left (low i), anterior (high j)
    and superior (high k) sides, and a ball in the middle that keeps the labels' centre central."""
    i, j, k = np.meshgrid(*(np.arange(N),) * 3, indexing="ij")
    labels = np.zeros((N, N, N), np.uint8)
    labels[(i - N / 2) ** 2 + (j - N / 2) ** 2 + (k - N / 2) ** 2 < 49] = 4
    labels[i < 4] = 1
    labels[j >= N - 4] = 2
    labels[k >= N - 4] = 3
    image = np.where(labels > 0, 200.0, 50.0).astype(np.float32)
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = -np.array(SPACING) * N / 2
    return image, labels, affine


def rotation(degrees: float, axis: int) -> np.ndarray:
    a = np.radians(degrees)
    c, s = np.cos(a), np.sin(a)
    p, q = [d for d in range(3) if d != axis]
    r = np.eye(4)
    r[p, p], r[p, q], r[q, p], r[q, q] = c, -s, s, c
    return r


def variant(name: str) -> tuple[np.ndarray, np.ndarray, Geometry]:
    """The same anatomy stored as RAS, as LPS, or as an oblique (rotated, permuted) acquisition."""
    image, labels, affine = phantom()
    if name == "LPS":
        image, affine2 = reorient(image, affine, "LPS")
        labels, _ = reorient(labels, affine, "LPS")
        affine = affine2
    elif name == "oblique":  # rotate the grid 25 degrees about S and 15 about A, then store it as PSR
        affine = rotation(15, 1) @ rotation(25, 2) @ affine
        image, affine2 = reorient(image, affine, "PSR")
        labels, _ = reorient(labels, affine, "PSR")
        affine = affine2
    return image, labels, Geometry(image.shape, affine)


def render(image: np.ndarray, labels: np.ndarray, geometry: Geometry) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """RGB pixels of the PNG and each panel's pixel box ``(top, bottom, left, right)``."""
    fig = preview_figure(image, labels, geometry, names=NAMES, window=(0, 255), alpha=1.0)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    pixels = imread(io.BytesIO(buffer.getvalue()))[..., :3]
    height, width = pixels.shape[:2]
    boxes = []
    for ax in fig.axes:  # axial, coronal, sagittal
        x0, y0, x1, y1 = ax.get_position().extents
        boxes.append((round((1 - y1) * height), round((1 - y0) * height), round(x0 * width), round(x1 * width)))
    return pixels, boxes


def centroid(pixels: np.ndarray, box: tuple[int, int, int, int], value: int) -> tuple[float, float]:
    """Where label ``value``'s colour lies in a panel, as fractions (0: left/top, 1: right/bottom)."""
    top, bottom, left, right = box
    panel = pixels[top:bottom, left:right]
    hits = np.argwhere(np.all(np.abs(panel - np.array(label_colour(value)) / 255) < 0.02, axis=-1))
    assert len(hits) > 20, f"label {value} not visible in the panel"
    row, col = hits.mean(axis=0)
    return col / panel.shape[1], row / panel.shape[0]


@pytest.mark.parametrize("name", ["RAS", "LPS", "oblique"])
def test_patient_left_is_on_the_picture_right(name: str) -> None:
    pixels, (axial, coronal, sagittal) = render(*variant(name))
    # axial (seen from the feet): left marker right, anterior on top
    assert centroid(pixels, axial, 1)[0] > 0.75
    assert centroid(pixels, axial, 2)[1] < 0.25
    # coronal (seen from the front): left marker right, superior on top
    assert centroid(pixels, coronal, 1)[0] > 0.75
    assert centroid(pixels, coronal, 3)[1] < 0.25
    # sagittal: anterior on the left, superior on top
    assert centroid(pixels, sagittal, 2)[0] < 0.25
    assert centroid(pixels, sagittal, 3)[1] < 0.25


def test_panels_keep_the_true_aspect_ratio_and_scale() -> None:
    image, labels, affine = phantom()
    fig = preview_figure(image, labels, Geometry(image.shape, affine))
    fig.draw_without_rendering()
    size = [(ax.get_window_extent().width, ax.get_window_extent().height) for ax in fig.axes]
    extent = np.array(SPACING) * N  # mm along R, A, S
    assert size[0][1] / size[0][0] == pytest.approx(extent[1] / extent[0], rel=0.03)  # axial: A over R
    assert size[1][1] / size[1][0] == pytest.approx(extent[2] / extent[0], rel=0.03)  # coronal: S over R
    assert size[2][1] / size[2][0] == pytest.approx(extent[2] / extent[1], rel=0.03)  # sagittal: S over A
    assert size[0][0] == pytest.approx(size[1][0], rel=0.02)  # one scale: same mm -> same pixels


def test_legend_names_volumes_and_window(tmp_path) -> None:
    image, labels, affine = phantom()
    hu = image * 4 - 1000  # CT-like values: the soft-tissue window by default
    fig = preview_figure(hu, labels, Geometry(image.shape, affine), names={**NAMES, 5: "absent"})
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    voxel_ml = np.prod(SPACING) / 1000
    for value, name in NAMES.items():
        assert f"{value}  {name}: {np.count_nonzero(labels == value) * voxel_ml:.1f} ml" in texts
    assert "5  absent: 0.0 ml" in texts
    footer = " ".join(t.get_text() for t in fig.texts)
    assert "W 400 L 40" in footer and "radiological convention" in footer
    assert all(letter in {t.get_text() for ax in fig.axes for t in ax.texts} for letter in "RLAPSI")

    out = save_preview(tmp_path / "p.png", image, labels, Geometry(image.shape, affine), "t", layout="axial", style="outline", names=NAMES)
    assert imread(out).shape[1] == 1200
    assert len(imread(out)) > 0


def test_windows() -> None:
    rng = np.random.default_rng(0)
    mr = rng.gamma(2.0, 100.0, (16, 16, 16)).astype(np.float32)
    lo, hi, text = display_window(mr)
    assert (lo, hi) == pytest.approx(tuple(np.percentile(mr[mr > mr.min()], [1, 99])))
    assert "percentile" in text
    assert display_window(mr, modality="CT")[:2] == (-160.0, 240.0)
    assert display_window(mr - 1024)[:2] == (-160.0, 240.0)  # Hounsfield units recognised
    assert display_window(mr, (0, 100))[2] == "window W 100 L 50"


def test_axial_rows_cover_each_label() -> None:
    image, labels, affine = phantom()
    fig = preview_figure(image, labels, Geometry(image.shape, affine), names=NAMES, layout="axial", per_row=4)
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 4 * len(NAMES)  # one row of 4 per label
    # the superior slab fills slices k = 28..31, at z = (k - 16) * 3 mm; the centre ball spans k = 10..22
    assert [t for t in titles if t.startswith("superior")] == [f"superior marker  z = {z:.1f} mm" for z in (36, 39, 42, 45)]
    assert [t for t in titles if t.startswith("centre")] == [f"centre  z = {z:.1f} mm" for z in (-18, -6, 6, 18)]
