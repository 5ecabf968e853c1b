"""Preflight checks of images, label maps and whole datasets (``medseg check``), one problem per line with its fix."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medseg.data.layouts import discover_cases
from medseg.io.checks import Problem, check_image, check_label
from medseg.io.image_io import is_image_file


@dataclass
class CheckReport:
    """Every problem found and how many files were looked at."""

    problems: list[Problem] = field(default_factory=list)
    checked: int = 0


def check_paths(paths: Sequence[Path], label_map: Path | None = None, allowed: Sequence[int] | None = None) -> CheckReport:
    """Check images, or dataset folders / ``dataset.json`` files (images and labels in pairs).

    ``label_map`` belongs to a single image path; ``allowed``: the label values a label map may hold.
    """
    report = CheckReport()
    for path in paths:
        if path.is_dir() or path.suffix == ".json":
            for case in discover_cases(path):
                geometry = None
                for image in case["image"]:
                    found, g = check_image(image, allow_channels=len(case["image"]) == 1)
                    report.problems += found
                    geometry = geometry or g
                    report.checked += 1
                if case["label"]:
                    report.problems += check_label(case["label"], allowed, geometry)
                    report.checked += 1
            continue
        if not is_image_file(path) and not path.exists():
            report.problems.append(Problem(str(path), "file not found", "check the path"))
            continue
        found, geometry = check_image(path)
        report.problems += found
        report.checked += 1
        if label_map is not None:
            report.problems += check_label(label_map, allowed, geometry)
            report.checked += 1
    return report


__all__ = ["CheckReport", "check_paths"]
