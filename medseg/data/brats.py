"""The BraTS release layout, read in place (``data.layout: brats``).

A BraTS release is a tree of case folders, each holding one NIfTI (``.nii`` or ``.nii.gz``) per modality and,
for training cases, the segmentation, named ``<case>_<suffix>``:

- 2017-2021 (``Brats17_*``, ``Brats18_*``, ``BraTS19_*``, ``BraTS20_Training_*``, ``BraTS2021_*``): suffixes
  ``_t1``, ``_t1ce``, ``_t2``, ``_flair``, ``_seg``; 2018/2019 put the cases under ``HGG/`` and ``LGG/``.
- 2023 and later (``BraTS-GLI-00000-000``): ``-t1n``, ``-t1c``, ``-t2w``, ``-t2f``, ``-seg``.

The loader walks the tree (up to :data:`MAX_DEPTH` folders deep), takes every folder holding the four modalities
as a case (its name is the folder's), and returns the images in the fixed order T1, T1ce, T2, FLAIR
(:data:`MODALITIES`; the pipeline's ``data.modalities`` should name them in that order). A case without a
segmentation (validation/test releases) is unlabelled. One known release quirk is handled: BraTS 2020 case 355's
segmentation is named ``W39_1998.09.19_Segm.nii``, so a case folder without ``_seg`` whose only other NIfTI file
has "seg" in its name uses that file.

Labels stay as stored: 0, 1, 2, 4 (2017-2021) or 0, 1, 2, 3 (2023+); the nested output heads detect the
convention per label map (:mod:`medseg.data.brats_labels`).
"""

from __future__ import annotations

import re
from pathlib import Path

from medseg.data.layouts import Case
from medseg.data.registry import register_layout
from medseg.errors import MedsegInputError

#: modality names in the order the loader returns the images
MODALITIES = ("T1", "T1ce", "T2", "FLAIR")
#: file-name suffixes per naming scheme: (T1, T1ce, T2, FLAIR, seg)
NAMINGS = {
    "2017-2021": ("_t1", "_t1ce", "_t2", "_flair", "_seg"),
    "2023": ("-t1n", "-t1c", "-t2w", "-t2f", "-seg"),
}
MAX_DEPTH = 4
_NIFTI = re.compile(r"^(?P<stem>.+)\.nii(\.gz)?$", re.IGNORECASE)


def _nifti_stems(folder: Path) -> dict[str, Path]:
    """``{file stem (lower case): path}`` of the NIfTI files directly inside ``folder``."""
    out: dict[str, Path] = {}
    for path in folder.iterdir():
        match = _NIFTI.match(path.name)
        if match and path.is_file() and not path.name.startswith("."):
            stem = match["stem"].lower()
            if stem in out:
                raise MedsegInputError(path, f"duplicates {out[stem].name} (same case file as .nii and .nii.gz?)")
            out[stem] = path
    return out


def _suffix_files(stems: dict[str, Path], suffix: str) -> list[Path]:
    return [path for stem, path in stems.items() if stem.endswith(suffix)]


def read_case_folder(folder: str | Path) -> Case | None:
    """The case in ``folder``, or ``None`` when the folder holds no complete set of modalities.

    Raises:
        MedsegInputError: a modality matched by two files, or a partial set of modalities.
    """
    folder = Path(folder)
    stems = _nifti_stems(folder)
    for suffixes in NAMINGS.values():
        found = [_suffix_files(stems, s) for s in suffixes[:4]]
        if not any(found):
            continue
        missing = [name for name, files in zip(MODALITIES, found) if not files]
        if missing:
            raise MedsegInputError(folder, f"BraTS case folder lacks {', '.join(missing)} (expected files ending in {', '.join(suffixes[:4])})")
        for name, files in zip(MODALITIES, found):
            if len(files) > 1:
                raise MedsegInputError(folder, f"{len(files)} files match {name}: {', '.join(sorted(p.name for p in files))}")
        images = [files[0] for files in found]
        seg = _suffix_files(stems, suffixes[4])
        if len(seg) > 1:
            raise MedsegInputError(folder, f"{len(seg)} segmentation files: {', '.join(sorted(p.name for p in seg))}")
        if not seg:  # BraTS 2020 case 355: "W39_1998.09.19_Segm.nii"
            others = [p for p in stems.values() if p not in images]
            seg = [p for p in others if "seg" in p.name.lower()] if len(others) == 1 else []
        return {"case": folder.name, "image": [str(p) for p in images], "label": str(seg[0]) if seg else None}
    return None


@register_layout("brats")
def load_brats(root: Path) -> list[Case]:
    """Every case folder under ``root`` (or ``root`` itself when it is one), sorted by case name.

    Raises:
        MedsegInputError: ``root`` missing or holding no BraTS case, two cases with one name, a broken case.
    """
    root = Path(root)
    if not root.is_dir():
        raise MedsegInputError(root, "BraTS dataset folder not found")
    cases: dict[str, Case] = {}
    frontier = [(root, 0)]
    while frontier:
        folder, depth = frontier.pop()
        case = read_case_folder(folder)
        if case is not None:
            if case["case"] in cases:
                raise MedsegInputError(folder, f"case name '{case['case']}' occurs twice under {root}")
            cases[case["case"]] = case
            continue
        if depth < MAX_DEPTH:
            frontier += [(sub, depth + 1) for sub in sorted(folder.iterdir()) if sub.is_dir() and not sub.name.startswith(".")]
    if not cases:
        raise MedsegInputError(root, "no BraTS case folders found (folders with *_t1, *_t1ce, *_t2, *_flair NIfTI files)")
    return [cases[name] for name in sorted(cases)]
