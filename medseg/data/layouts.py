"""Dataset layouts accepted by ``medseg train``: Decathlon ``dataset.json`` and ``imagesTr/`` + ``labelsTr/``.

A case is a dict ``{"case": name, "image": [path per modality], "label": path or None}``. Files are used
where they are, under their own names (nothing is copied or renamed).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from medseg.data.registry import load_layout
from medseg.errors import MedsegInputError
from medseg.io.image_io import case_name, is_image_file

Case = dict[str, Any]
_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def load_decathlon(dataset_json: str | Path, section: str = "training") -> list[Case]:
    """Cases of a Medical Segmentation Decathlon ``dataset.json``.

    Entries are ``{"image": path, "label": path}`` (paths relative to the JSON's folder; a 4D image holds
    the modalities on its last axis) or, in the ``test`` section, bare paths. A missing ``label`` makes
    an unlabelled case.
    """
    dataset_json = Path(dataset_json)
    root = dataset_json.parent
    try:
        meta = json.loads(dataset_json.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise MedsegInputError(dataset_json, f"cannot read dataset description ({exc})") from exc
    if section not in meta:
        raise MedsegInputError(dataset_json, f"has no '{section}' section")
    cases = []
    for entry in meta[section]:
        entry = {"image": entry} if isinstance(entry, str) else entry
        images = entry["image"] if isinstance(entry["image"], list) else [entry["image"]]
        image_paths = [str((root / p).resolve()) for p in images]
        label = entry.get("label")
        cases.append({"case": shared_case_name(image_paths), "image": image_paths, "label": str((root / label).resolve()) if label else None})
    _check_exist(cases, dataset_json)
    return cases


def load_image_label_folders(root: str | Path, images: str = "imagesTr", labels: str = "labelsTr") -> list[Case]:
    """Cases of an ``imagesTr/`` + ``labelsTr/`` folder pair.

    nnU-Net names (``case_0000.nii.gz``, ``case_0001.nii.gz`` ... one file per modality, label
    ``case.nii.gz``) and plain names (``case.nii.gz`` in both folders) are both accepted. Cases without
    a label file are unlabelled.
    """
    root = Path(root)
    image_dir, label_dir = root / images, root / labels
    if not image_dir.is_dir():
        raise MedsegInputError(root, f"no '{images}/' folder")
    grouped = group_channels(image_dir)
    label_files = {case_name(p): p for p in label_dir.iterdir() if is_image_file(p)} if label_dir.is_dir() else {}
    cases = []
    for case, channels in grouped.items():
        label = label_files.get(case)
        cases.append({"case": case, "image": [str(p) for p in channels], "label": str(label) if label else None})
    if not cases:
        raise MedsegInputError(image_dir, "holds no images")
    return cases


def group_channels(folder: str | Path) -> dict[str, list[Path]]:
    """Image files of a folder grouped by case: ``case_0000``, ``case_0001`` ... are one case's channels
    (nnU-Net naming); any other name is a single-channel case. Sorted by case name."""
    folder = Path(folder)
    grouped: dict[str, dict[int, Path]] = {}
    for path in sorted(folder.iterdir()):
        if not is_image_file(path) or path.name.startswith("."):
            continue
        name = case_name(path)
        match = _CHANNEL.match(name)
        case, channel = (match["case"], int(match["channel"])) if match else (name, 0)
        if channel in grouped.setdefault(case, {}):
            raise MedsegInputError(path, f"two files give channel {channel} of case '{case}'")
        grouped[case][channel] = path
    out = {}
    for case, channels in sorted(grouped.items()):
        if sorted(channels) != list(range(len(channels))):
            raise MedsegInputError(folder, f"case '{case}' has channels {sorted(channels)}; expected 0..{len(channels) - 1}")
        out[case] = [channels[c] for c in sorted(channels)]
    return out


def shared_case_name(paths: list[str]) -> str:
    """Case name of one case's files: the file name for one file; for several, what their names share
    (``spine_000_fat`` + ``spine_000_inn`` -> ``spine_000``; nnU-Net ``case_0000`` + ``case_0001`` -> ``case``)."""
    names = [case_name(p) for p in paths]
    if len(names) == 1:
        return names[0]
    stripped = [m["case"] if (m := _CHANNEL.match(n)) else n for n in names]
    if len(set(stripped)) == 1:
        return stripped[0]
    prefix = os.path.commonprefix(names)
    cut = max(prefix.rfind(sep) for sep in "_-.")
    return prefix[:cut] if cut > 0 else names[0]


def discover_cases(path: str | Path, layout: str = "auto") -> list[Case]:
    """Cases of a ``dataset.json`` (file or folder holding one) or an ``imagesTr/labelsTr`` folder
    (``layout="auto"``), or of a registered layout such as ``lits`` (see :mod:`medseg.data.registry`)."""
    path = Path(path)
    if layout != "auto":
        return load_layout(layout, path)
    if path.is_file() and path.suffix == ".json":
        return load_decathlon(path)
    if path.is_dir() and (path / "dataset.json").is_file():
        return load_decathlon(path / "dataset.json")
    if path.is_dir():
        return load_image_label_folders(path)
    raise MedsegInputError(path, "dataset not found (expected a dataset.json or a folder with imagesTr/ and labelsTr/)")


def _check_exist(cases: list[Case], source: Path) -> None:
    for case in cases:
        for p in [*case["image"], case["label"]]:
            if p is not None and not Path(p).exists():
                raise MedsegInputError(source, f"lists {p}, which does not exist")
