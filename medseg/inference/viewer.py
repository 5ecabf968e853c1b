"""A case viewer in one self-contained HTML file (``medseg view``, ``medseg predict --html``).

The page embeds NiiVue (the minified UMD bundle of the npm package ``@niivue/niivue``, vendored in
``medseg/viewer_assets/`` with its BSD-2-Clause license), the image and the label map as gzipped NIfTI
(base64), so it opens offline in any browser with WebGL2, from a file:// URL or a USB stick. It shows the
image with the labels overlaid in a multiplanar/3D viewer (radiological convention by default, opacity
slider), a legend with the label colours of :mod:`medseg.palette` and volumes in ml, the run's warnings
and a provenance summary of the case report (:mod:`medseg.inference.report`).

Size: the NiiVue bundle is about 2.2 MB; the images add roughly their gzipped size times 4/3.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import MedsegInputError, MedsegOutputError
from medseg.inference.outputs import OutputSet, preflight
from medseg.io.atomic import check_output_path, ensure_writable_dir, full_suffix, write_text
from medseg.io.geometry import Geometry
from medseg.palette import label_colour, label_hex
from medseg.viz import display_window, label_centre, label_volumes

ASSETS = Path(__file__).resolve().parents[1] / "viewer_assets"
NIIVUE_JS = ASSETS / "niivue.umd.js"
NIIVUE_VERSION = "0.69.0"
TEMPLATE = ASSETS / "viewer.html"


def _gzipped_nifti(array: np.ndarray, affine: np.ndarray) -> str:
    """Base64 of a gzipped NIfTI-1 of ``array`` (ISA-L gzip when installed: several times faster)."""
    import nibabel as nib

    raw = nib.Nifti1Image(array, affine).to_bytes()
    try:
        from isal import igzip

        packed = igzip.compress(raw, compresslevel=1)
    except ImportError:  # isal is a core dependency, but the format is the same without it
        import gzip

        packed = gzip.compress(raw, compresslevel=1)
    return base64.b64encode(packed).decode("ascii")


def _display_array(image: np.ndarray) -> np.ndarray:
    """The image in the smallest exact dtype NiiVue reads: int16 for integer values in range, else float32."""
    image = np.asarray(image)
    if np.issubdtype(image.dtype, np.integer) or np.array_equal(image, np.round(image)):
        if image.size == 0 or (image.min() >= -32768 and image.max() <= 32767):
            return image.astype(np.int16)
    return image.astype(np.float32)


def _label_array(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    return labels.astype(np.uint8 if labels.size == 0 or int(labels.max()) < 256 else np.uint16)


def label_lut(entries: Sequence[tuple[int, str, float]]) -> dict[str, list[Any]]:
    """NiiVue label colour map (``NVImage.setColormapLabel``): background transparent, palette colours opaque."""
    values = [0] + [v for v, _, _ in entries]
    rgb = [(0, 0, 0)] + [label_colour(v) for v, _, _ in entries]
    return {"R": [c[0] for c in rgb], "G": [c[1] for c in rgb], "B": [c[2] for c in rgb], "A": [0] + [255] * len(entries),
            "I": values, "labels": ["background"] + [name for _, name, _ in entries]}


def provenance_summary(report: dict[str, Any] | None) -> list[tuple[str, str]]:
    """``(field, value)`` rows of a case report (:func:`medseg.inference.report.case_report`) for people."""
    if not report:
        return []
    rows: list[tuple[str, str]] = []
    model = report.get("model") or {}
    add = lambda key, value: rows.append((key, str(value))) if value not in (None, "", [], {}) else None  # noqa: E731
    add("case", report.get("case"))
    add("created", report.get("created"))
    add("model", " ".join(str(x) for x in (model.get("name"), f"({model['network']})" if model.get("network") else "") if x))
    add("weights sha256", str(model.get("weights_sha256", ""))[:16])
    versions = report.get("versions") or {}
    add("software", ", ".join(f"{k} {v}" for k, v in versions.items() if k in ("medseg", "torch", "monai") and v))
    device = report.get("device") or {}
    add("device", f"{device.get('name', '')} ({device['reason']})" if device.get("reason") else device.get("name"))
    settings = report.get("settings") or {}
    add("settings", ", ".join(f"{k} {v}" for k, v in settings.items()))
    inputs = report.get("input") or {}
    add("input", inputs.get("path"))
    add("input sha256", str(inputs.get("sha256", ""))[:16])
    geometry = inputs.get("geometry") or {}
    if geometry:
        add("input grid", f"{'x'.join(map(str, geometry.get('shape', [])))} voxels of "
            f"{'x'.join(f'{s:.3g}' for s in geometry.get('spacing_mm', []))} mm, {geometry.get('orientation', '')}")
    dicom = inputs.get("dicom") or {}
    add("DICOM series", dicom.get("series_uid") or dicom.get("uid"))
    seconds = report.get("seconds") or {}
    add("seconds", ", ".join(f"{k} {v:.2f}" for k, v in seconds.items() if isinstance(v, (int, float))))
    memory = report.get("peak_memory") or {}
    add("peak memory", f"{memory['rss_mb']} MB" if "rss_mb" in memory else None)
    return rows


def case_html(
    image: np.ndarray, geometry: Geometry, labels: np.ndarray | None = None, *, names: dict[int, str] | None = None,
    title: str = "", subtitle: str = "", warnings: Sequence[str] = (), report: dict[str, Any] | None = None,
    window: tuple[float, float] | None = None, modality: str | None = None, opacity: float = 0.5, radiological: bool = True,
) -> str:
    """The viewer page of one case.

    Args:
        image: ``(I, J, K)`` image in ``geometry`` (first channel of a multi-modal case).
        labels: ``(I, J, K)`` label map in the same geometry, or ``None``.
        names: label value -> name (legend and NiiVue's cursor read-out).
        warnings: lines shown under "Warnings" (e.g. the report's ``warnings``).
        report: a case report; its provenance summary is shown (:func:`provenance_summary`).
        window / modality: the intensity window, as in the PNG preview (:func:`medseg.viz.display_window`).
    """
    if not NIIVUE_JS.is_file() or not TEMPLATE.is_file():
        raise MedsegOutputError(f"{ASSETS}: the viewer's bundled files are missing; reinstall medseg")
    image = np.asarray(image)
    lo, hi, window_text = display_window(image.astype(np.float32, copy=False), window, modality)
    entries = label_volumes(labels, geometry, names) if labels is not None else []
    centre = label_centre(labels) if labels is not None else tuple(s // 2 for s in image.shape)
    payload = {
        "title": title or "medseg case", "subtitle": subtitle, "window": [lo, hi], "window_text": window_text,
        "image": _gzipped_nifti(_display_array(image), geometry.affine),
        "labels": _gzipped_nifti(_label_array(labels), geometry.affine) if labels is not None else None,
        "lut": label_lut(entries), "opacity": float(opacity), "radiological": bool(radiological),
        "legend": [{"value": v, "name": n, "volume_ml": round(ml, 3), "colour": label_hex(v)} for v, n, ml in entries],
        "warnings": [str(w) for w in warnings], "provenance": provenance_summary(report),
        "centre_mm": [float(c) for c in (geometry.affine @ np.array([*centre, 1.0]))[:3]],
    }
    fields = {
        "TITLE": html.escape(str(payload["title"])), "MEDSEG_VERSION": _medseg_version(), "NIIVUE_VERSION": NIIVUE_VERSION,
        # inside <script>, "</script" or "<!--" in a name or warning would end or confuse the element: every
        # "<" is written as the JSON escape \u003c (JSON.parse reads it back as "<")
        "DATA": json.dumps(payload).replace("<", "\\u003c"),
        "NIIVUE": NIIVUE_JS.read_text(encoding="utf-8"),
    }
    return re.sub(r"\{\{([A-Z_]+)\}\}", lambda m: fields[m.group(1)], TEMPLATE.read_text(encoding="utf-8"))


def _medseg_version() -> str:
    from medseg._version import __version__

    return __version__


def write_case_html(path: str | Path, image: np.ndarray, geometry: Geometry, labels: np.ndarray | None = None, **options: Any) -> Path:
    """Write :func:`case_html` to ``path`` (atomically); ``options`` are its keyword arguments."""
    return write_text(path, case_html(image, geometry, labels, **options))


def view_files(
    image_path: Path, output: Path, labels_path: Path | None = None, report_path: Path | None = None,
    names: dict[int, str] | None = None, force: bool = False, png: Path | None = None,
    png_options: dict[str, Any] | None = None, **options: Any,
) -> list[Path]:
    """``medseg view``: the viewer page of an image file or DICOM series folder (and a label file), and
    optionally the PNG preview (:func:`medseg.viz.save_preview` with ``png_options``), all or nothing.

    Label names and warnings come from ``report_path`` (a ``medseg predict --report`` JSON) when given;
    ``options`` go to :func:`case_html` (``window`` and ``modality`` to the PNG too).

    Raises:
        MedsegInputError: an input cannot be read, or the label map's grid differs from the image's.
    """
    preflight([output, png], force)
    image, geometry, labels = read_case(image_path, labels_path)
    report = _read_report(report_path) if report_path is not None else None
    if report is not None:
        stats = (report.get("labels") or {}).get("labels") or {}
        names = names or {int(k): v["name"] for k, v in stats.items() if isinstance(v, dict) and "name" in v}
        options.setdefault("warnings", report.get("warnings") or [])
    options.setdefault("title", image_path.name)
    options.setdefault("subtitle", f"{'x'.join(map(str, geometry.shape))} voxels, "
                       f"{'x'.join(f'{s:.3g}' for s in geometry.spacing)} mm, {geometry.orientation}")
    with OutputSet().transaction() as out:
        out.written.append(write_case_html(output, image, geometry, labels, names=names, report=report, **options))
        if png is not None:
            shown = labels if labels is not None else np.zeros(geometry.shape[:3], np.uint8)  # no label map: the image alone
            out.preview(png, image, shown, geometry, options["title"], options.get("window"), names=names,
                        modality=options.get("modality"), **(png_options or {}))
    return out.written


def read_case(image_path: Path, labels_path: Path | None = None) -> tuple[np.ndarray, Geometry, np.ndarray | None]:
    """``(image (I, J, K), geometry, labels or None)``: an image file (first channel) or DICOM series folder,
    and a label map that must lie on the same grid."""
    from medseg.io.image_io import read_image

    if image_path.is_dir():
        from medseg.io.dicom import read_dicom_series

        image, geometry = read_dicom_series(image_path)[:2]
    else:
        image, geometry = read_image(image_path, allow_channels=True)
    image = image[..., 0] if image.ndim == 4 else image  # first channel of a multi-channel file
    if labels_path is None:
        return np.asarray(image), geometry, None
    labels, label_geometry = read_image(labels_path, "label")
    problem = geometry.mismatch(label_geometry)
    if problem:
        raise MedsegInputError(labels_path, f"label map does not match the image {image_path.name}: {problem}")
    return np.asarray(image), geometry, labels


def _read_report(path: Path) -> dict[str, Any]:
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MedsegInputError(path, f"cannot read the report: {' '.join(str(exc).split())}") from None
    if not isinstance(report, dict):
        raise MedsegInputError(path, "not a medseg case report (expected a JSON object)")
    return report


def with_html(targets_for: Callable[[Any], Any], html: Path | None, batch: bool, force: bool) -> Callable[[Any], Any]:
    """``medseg predict --html``: add the viewer page to each case's :class:`~medseg.inference.outputs.CaseTargets`
    (``html`` is the page of one case, or a folder of ``CASE.html`` in batch mode), checked before any work."""
    if html is None:
        return targets_for
    if batch:
        ensure_writable_dir(html)
        return lambda case: replace(targets_for(case), html=html / f"{case.name}.html")
    if full_suffix(html).lower() not in (".html", ".htm"):
        raise MedsegOutputError(f"{html}: --html writes an .html file")
    check_output_path(html, force)
    return lambda case: replace(targets_for(case), html=html)


__all__ = ["NIIVUE_JS", "NIIVUE_VERSION", "case_html", "label_lut", "provenance_summary", "read_case", "view_files", "with_html", "write_case_html"]
