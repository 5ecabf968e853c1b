"""Liver/tumour CT releases read in place (``data.layout``): LiTS 2017 (``lits``) and MSD Task03_Liver (``msd_liver``).

Both hold the same 131 training CTs with labels 0 background, 1 liver, 2 tumour (MSD calls it "cancer").
Files are used under their release names; nothing is copied or renamed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from medseg.data.layouts import Case, load_decathlon
from medseg.data.registry import register_layout
from medseg.errors import MedsegInputError
from medseg.io.image_io import case_name

_VOLUME = re.compile(r"^(?P<test>test-)?volume-(?P<n>\d+)\.nii(\.gz)?$")
_SEGMENTATION = re.compile(r"^segmentation-(?P<n>\d+)\.nii(\.gz)?$")


def _index(found: dict[int, Path], n: int, path: Path) -> None:
    if n in found:
        raise MedsegInputError(path, f"case {n} appears twice (also {found[n]})")
    found[n] = path


@register_layout("lits")
def load_lits(root: Path) -> list[Case]:
    """Cases of the LiTS release: ``volume-N.nii`` with ``segmentation-N.nii`` anywhere below ``root``.

    Accepts the download as shipped (``Training Batch 1/``, ``Training Batch 2/``, test volumes in their own
    folder) or everything in one folder; ``.nii`` or ``.nii.gz``. ``test-volume-N.nii`` become unlabelled
    cases. Cases are named after their volume file (``volume-17``) and sorted by ``N``; hidden files (macOS
    ``._volume-0.nii``) are ignored.

    Raises:
        MedsegInputError: no volumes, a segmentation without its volume, or a case number twice.
    """
    root = Path(root)
    if not root.is_dir():
        raise MedsegInputError(root, "LiTS layout: expected the folder holding volume-N.nii and segmentation-N.nii")
    volumes: dict[int, Path] = {}
    tests: dict[int, Path] = {}
    segmentations: dict[int, Path] = {}
    for path in sorted(root.rglob("*.nii*")):
        if path.name.startswith(".") or not path.is_file():
            continue
        if match := _VOLUME.match(path.name):
            _index(tests if match["test"] else volumes, int(match["n"]), path)
        elif match := _SEGMENTATION.match(path.name):
            _index(segmentations, int(match["n"]), path)
    orphans = sorted(set(segmentations) - set(volumes))
    if orphans:
        raise MedsegInputError(segmentations[orphans[0]], f"has no volume-{orphans[0]}.nii below {root}")
    if not volumes and not tests:
        raise MedsegInputError(root, "holds no volume-N.nii files (LiTS layout)")
    cases = [
        {"case": case_name(volumes[n]), "image": [str(volumes[n])], "label": str(segmentations[n]) if n in segmentations else None}
        for n in sorted(volumes)
    ]
    return cases + [{"case": case_name(tests[n]), "image": [str(tests[n])], "label": None} for n in sorted(tests)]


@register_layout("msd_liver")
def load_msd_liver(path: Path) -> list[Case]:
    """Cases of the Medical Segmentation Decathlon's ``Task03_Liver`` (its folder or ``dataset.json``).

    Training cases (``imagesTr/liver_N.nii.gz`` + ``labelsTr/``) come from ``dataset.json``, then the
    unlabelled ``test`` cases. The labels must be Task03's three (background, liver, cancer).
    """
    path = Path(path)
    dataset_json = path / "dataset.json" if path.is_dir() else path
    if not dataset_json.is_file():
        raise MedsegInputError(path, "MSD layout: no dataset.json")
    try:
        labels = json.loads(dataset_json.read_text(encoding="utf-8")).get("labels", {})
    except (OSError, json.JSONDecodeError, AttributeError) as exc:
        raise MedsegInputError(dataset_json, f"cannot read dataset description ({exc})") from exc
    names = {str(k): str(v).lower() for k, v in labels.items()}
    if sorted(names) != ["0", "1", "2"] or names["1"] != "liver":
        raise MedsegInputError(dataset_json, f"labels {labels} are not Task03_Liver's (0 background, 1 liver, 2 cancer)")
    cases = load_decathlon(dataset_json, "training")
    meta = json.loads(dataset_json.read_text(encoding="utf-8"))
    return cases + (load_decathlon(dataset_json, "test") if meta.get("test") else [])
