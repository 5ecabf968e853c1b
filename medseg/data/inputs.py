"""What ``medseg predict``, ``check`` and ``info`` read: cases from files, a DICOM folder, a folder of cases or a list file.

- a case is one or more image files (one per modality) or one DICOM series folder;
- a folder of cases holds image files (nnU-Net ``case_0000`` channel naming, or ``case_<modality>`` names
  for a multi-modal model, group modalities) and/or
  sub-folders that each hold one DICOM series (the sub-folder's name is the case name);
- a list file (``.txt``, ``.csv``, ``.lst``, ``.tsv``) names one case per line: its image files (one per
  modality, separated by commas or tabs) or a DICOM folder; relative paths are relative to the list file,
  blank lines and lines starting with ``#`` are skipped.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from medseg.data.layouts import group_channels, shared_case_name
from medseg.data.registry import LAYOUTS, load_layout
from medseg.errors import MedsegInputError
from medseg.io.dicom import is_dicom_folder
from medseg.io.modalities import group_by_modality

LIST_SUFFIXES = (".txt", ".csv", ".lst", ".tsv")


@dataclass(frozen=True)
class CaseSource:
    """One case to predict: image files (one per modality) or a DICOM series folder."""

    name: str
    paths: tuple[Path, ...]
    dicom: bool = False

    def describe(self) -> str:
        return str(self.paths[0]) if len(self.paths) == 1 else f"{self.paths[0]} (+{len(self.paths) - 1} modalities)"


def _folder_name(path: Path) -> str:
    """A folder's own name as given (``.`` becomes the current folder's name; links are not followed)."""
    return Path(os.path.normpath(path.absolute())).name


def is_list_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in LIST_SUFFIXES


def single_case(paths: list[Path]) -> CaseSource:
    """The case given by ``-i`` files (one per modality) or one DICOM folder."""
    for path in paths:
        if not path.exists():
            raise MedsegInputError(path, "file not found")
    if len(paths) == 1 and paths[0].is_dir():
        return CaseSource(_folder_name(paths[0]), (paths[0],), dicom=True)
    for path in paths:
        if path.is_dir():
            raise MedsegInputError(path, "is a folder; give one folder alone, or files (one -i per modality)")
    return CaseSource(shared_case_name([str(p) for p in paths]), tuple(paths))


def folder_cases(folder: Path, modalities: Sequence[str] | None = None) -> list[CaseSource]:
    """Cases of a folder: image files grouped by case, and sub-folders holding a DICOM series.

    With a multi-modal model's ``modalities``, files named ``case_<modality>`` (``spine_010_fat.nii.gz``)
    are grouped by case in the model's order; otherwise nnU-Net's ``case_0000`` naming groups them.
    """
    grouped = group_by_modality(folder, modalities) if modalities else None
    cases = [CaseSource(name, tuple(files)) for name, files in (grouped or group_channels(folder)).items()]
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if is_dicom_folder(sub):
            cases.append(CaseSource(sub.name, (sub,), dicom=True))
    return _unique(cases, folder)


def list_file_cases(list_file: Path) -> list[CaseSource]:
    """Cases of a list file (one per line: image files separated by commas/tabs, or a DICOM folder)."""
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise MedsegInputError(list_file, f"cannot read the case list ({exc})") from exc
    cases = []
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        paths = [Path(p.strip()) for p in re.split(r"[,\t]", line) if p.strip()]
        paths = [p if p.is_absolute() else list_file.parent / p for p in paths]
        if len(paths) == 1 and paths[0].is_dir():
            cases.append(CaseSource(_folder_name(paths[0]), (paths[0],), dicom=True))
        elif any(p.is_dir() for p in paths):
            raise MedsegInputError(list_file, f"line {number}: a DICOM folder must stand alone on its line")
        else:
            cases.append(CaseSource(shared_case_name([str(p) for p in paths]), tuple(paths)))
    if not cases:
        raise MedsegInputError(list_file, "the case list names no cases")
    return _unique(cases, list_file)


def batch_cases(path: Path, modalities: Sequence[str] | None = None) -> list[CaseSource]:
    """Cases of a folder or list file (``medseg predict`` batch mode); ``modalities``: the model's."""
    cases = list_file_cases(path) if is_list_file(path) else folder_cases(path, modalities)
    if not cases:
        raise MedsegInputError(path, "folder holds no images and no DICOM series folders")
    return cases


def layout_cases(folder: Path, layout: str) -> list[CaseSource]:
    """Cases of a folder read as a registered dataset layout (one image per modality; labels, if any, ignored)."""
    if not folder.is_dir():
        raise MedsegInputError(folder, "--layout needs one folder as input")
    if layout not in LAYOUTS:
        raise MedsegInputError(None, LAYOUTS.unknown_message(layout, option="--layout"))
    cases = [CaseSource(c["case"], tuple(Path(p) for p in c["image"])) for c in load_layout(layout, folder)]
    if not cases:
        raise MedsegInputError(folder, f"no cases of layout '{layout}' found")
    return cases


def _unique(cases: list[CaseSource], where: Path) -> list[CaseSource]:
    seen: dict[str, CaseSource] = {}
    for case in cases:
        if case.name in seen:
            raise MedsegInputError(where, f"two cases are named '{case.name}' ({seen[case.name].describe()} and {case.describe()}); outputs would collide")
        seen[case.name] = case
    return cases


def cases_of(path: Path) -> list[CaseSource]:
    """The cases of any one input ``medseg predict`` takes: an image file, a DICOM series folder, a folder of
    cases or a list file (``medseg check`` and ``medseg info`` read what ``predict`` reads)."""
    if is_list_file(path) or (path.is_dir() and not is_dicom_folder(path)):
        return batch_cases(path)
    return [single_case([path])]


__all__ = ["CaseSource", "cases_of", "LIST_SUFFIXES", "batch_cases", "folder_cases", "is_list_file", "layout_cases", "list_file_cases", "single_case"]
