"""Preflight checks of images, label maps and whole datasets (``medseg check``), one problem per line with its fix."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medseg.data.inputs import CaseSource, cases_of
from medseg.data.layouts import discover_cases
from medseg.errors import MedsegInputError
from medseg.io.checks import Problem, check_image, check_label, check_series


@dataclass
class CheckReport:
    """Every problem found and how many files were looked at."""

    problems: list[Problem] = field(default_factory=list)
    checked: int = 0


def is_dataset(path: Path) -> bool:
    """A training dataset (``dataset.json``, or a folder with one or with ``imagesTr/``), not prediction inputs."""
    return (path.is_file() and path.suffix == ".json") or (path.is_dir() and ((path / "dataset.json").is_file() or (path / "imagesTr").is_dir()))


def _check_case(case: CaseSource, report: CheckReport) -> None:
    for path in case.paths:
        if case.dicom:
            found, files = check_series(path)
        else:
            found, files = check_image(path, allow_channels=len(case.paths) == 1)[0], 1
        report.problems += found
        report.checked += files


def _check_dataset(path: Path, allowed: Sequence[int] | None, report: CheckReport) -> None:
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


def check_paths(paths: Sequence[Path], label_map: Path | None = None, allowed: Sequence[int] | None = None) -> CheckReport:
    """Check what ``medseg predict`` takes (image files, a DICOM series folder, a folder of cases, a list
    file) or training datasets (``dataset.json`` / ``imagesTr`` folders: images and labels in pairs).

    ``label_map`` belongs to a single image path; ``allowed``: the label values a label map may hold.
    """
    report = CheckReport()
    for path in paths:
        if not path.exists():
            report.problems.append(Problem(str(path), "file not found", "check the path (no such file or folder)"))
            continue
        if is_dataset(path):
            _check_dataset(path, allowed, report)
            continue
        try:
            cases = cases_of(path)
        except MedsegInputError as exc:
            report.problems.append(Problem(exc.path or str(path), exc.problem, "give image files, a DICOM series folder, a folder of cases or a list file"))
            continue
        if cases != [CaseSource(cases[0].name, (path,))]:  # a DICOM series, a folder of cases or a list file
            for case in cases:
                _check_case(case, report)
            continue
        found, geometry = check_image(path)
        report.problems += found
        report.checked += 1
        if label_map is not None:
            report.problems += check_label(label_map, allowed, geometry)
            report.checked += 1
    return report


__all__ = ["CheckReport", "check_paths"]
