"""All-or-nothing output sets: every file of a case is written atomically, and a failure part-way
removes the files this case already wrote, so a failed command leaves no partial output."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg.io.atomic import check_output_path, write_json
from medseg.io.geometry import Geometry
from medseg.io.image_io import Kind, write_image
from medseg.viz import save_preview


@dataclass
class CaseTargets:
    """Where one case's outputs go (``None``: not requested; ``labels`` is ``None`` for DICOM SEG only)."""

    labels: Path | None
    probabilities: Path | None = None
    preview: Path | None = None
    stats: Path | None = None
    dicom_seg: Path | None = None
    report: Path | None = None
    uncertainty: Path | None = None
    #: head-provided extra outputs by name (``OutputHead.extra_outputs``), e.g. ``{"regions": path}``
    extras: dict[str, Path] = field(default_factory=dict)
    #: self-contained HTML case viewer (:mod:`medseg.inference.viewer`)
    html: Path | None = None


class OutputSet:
    """Collects the outputs of one case; use as a context manager."""

    def __init__(self) -> None:
        self.written: list[Path] = []

    def image(self, path: Path, array: Any, geometry: Geometry, kind: Kind = "label") -> None:
        self.written.append(write_image(path, array, geometry, kind))

    def json(self, path: Path, obj: Any) -> None:
        self.written.append(write_json(path, obj))

    def preview(
        self, path: Path, image: np.ndarray, labels: np.ndarray, geometry: Geometry, title: str, window: tuple[float, float] | None = None,
        **options: Any,
    ) -> None:
        """PNG preview (:func:`medseg.viz.save_preview`; ``options``: its names, layout, style ...)."""
        self.written.append(save_preview(path, image, labels, geometry, title, window, **options))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[OutputSet]:
        try:
            yield self
        except BaseException:
            for path in self.written:
                path.unlink(missing_ok=True)
            raise


def preflight(paths: list[Path | None], force: bool) -> None:
    """Fail before any work if an output exists (without ``force``) or its folder is not writable."""
    for path in paths:
        if path is not None:
            check_output_path(path, force)


def label_statistics(labels: np.ndarray, geometry: Geometry, names: dict[int, str]) -> dict[str, Any]:
    """Voxel count and volume (ml) per label of the package (background excluded)."""
    voxel_ml = float(np.prod(geometry.spacing)) / 1000.0
    counts = np.bincount(labels.ravel().astype(np.int64), minlength=max(names) + 1)
    return {
        "voxel_volume_ml": voxel_ml,
        "labels": {
            str(value): {"name": name, "voxels": int(counts[value]), "volume_ml": round(float(counts[value]) * voxel_ml, 4)}
            for value, name in names.items()
            if value != 0
        },
    }
