"""Registration pairs: fixed/moving images with optional label maps, read in place from common layouts.

A pair is a dict ``{"case": name, "fixed": path, "moving": path, "fixed_labels": path or None,
"moving_labels": path or None}``. A :class:`PairSet` holds the training pairs of a source, its
validation pairs where the release names them, its held-out test pairs, and for *unpaired* releases
(inter-subject registration: any two subjects make a pair) the subjects the pairs are formed from.

Layouts (``data.layout`` in a registration pipeline; ``auto`` detects them in this order):

- ``pairs_json``: medseg's ``pairs.json`` (written by :func:`medseg.data.mni152.write_pairs`):
  ``{"labels": {...}, "pairs": [{"fixed", "moving", "fixed_labels"?, "moving_labels"?, "name"?}],
  "val": [...]?, "test": [...]?}`` with paths relative to the JSON's folder.
- ``learn2reg``: a Learn2Reg ``*_dataset.json`` (OASIS, AbdomenCTCT, NLST, ...): training pairs from
  ``training_paired_images``, or every ordered pair of the ``training`` subjects when that list is
  empty (OASIS: inter-subject); validation pairs from ``registration_val`` (their subjects leave the
  training pool); labels from each ``training`` entry's ``label`` or the image's twin in ``labelsTr/``.
- ``image_folders``: an ``imagesTr/`` (+ ``labelsTr/``) folder without a JSON: unpaired subjects.
- ``oasis``: neurite-OASIS subject folders (``OASIS_OAS1_0001_MR1/aligned_norm.nii.gz`` with
  ``aligned_seg35.nii.gz``, or ``aligned_seg4.nii.gz`` when that is all there is): unpaired subjects.

Generators (``data.synthetic.kind``): ``mni152_pairs`` writes MNI152-derived pairs (see
:mod:`medseg.data.mni152`) and returns their ``pairs.json``.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import MedsegConfigError, MedsegInputError
from medseg.io.image_io import case_name
from medseg.registry import Registry

Pair = dict[str, Any]
PairLoader = Callable[[Path], "PairSet"]
PairGenerator = Callable[..., Path]

PAIR_LAYOUTS: Registry[PairLoader] = Registry("pair layout", packages=["medseg.data"], option="data.layout")
PAIR_GENERATORS: Registry[PairGenerator] = Registry("pair generator", packages=["medseg.data"], option="data.synthetic.kind")
IMAGE_KEYS = ("fixed", "moving")
LABEL_KEYS = ("fixed_labels", "moving_labels")


@dataclass
class PairSet:
    """What a pair source holds.

    Attributes:
        source: the file or folder it was read from (for messages).
        train: training pairs (for unpaired sources: every ordered pair of ``subjects``).
        val: validation pairs named by the release, or ``None`` (then a seeded split is drawn).
        test: held-out pairs (not used for training or validation).
        subjects: for unpaired sources, ``{"case", "image", "labels"}`` per subject (split by subject).
        labels: ``{value: name}`` when the source says so.
    """

    source: Path
    train: list[Pair]
    val: list[Pair] | None = None
    test: list[Pair] = field(default_factory=list)
    subjects: list[dict[str, Any]] | None = None
    labels: dict[int, str] | None = None


#: ``@register_pair_layout(name)``: ``loader(path) -> PairSet`` as ``data.layout: name``
register_pair_layout = PAIR_LAYOUTS.register
#: ``@register_pair_generator(kind)``: ``fn(root, n_train, n_test, seed, **options) -> pairs.json``
register_pair_generator = PAIR_GENERATORS.register


def list_pair_layouts() -> list[str]:
    return PAIR_LAYOUTS.names()


def list_pair_generators() -> list[str]:
    return PAIR_GENERATORS.names()


def make_pair_entry(name: str, fixed: Any, moving: Any, fixed_labels: Any = None, moving_labels: Any = None) -> Pair:
    """A pair dict with absolute path strings (``None`` for missing label maps)."""
    as_str = [None if p is None else str(Path(p).resolve()) for p in (fixed, moving, fixed_labels, moving_labels)]
    return {"case": name, **dict(zip(IMAGE_KEYS + LABEL_KEYS, as_str, strict=True))}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MedsegInputError(path, f"cannot read the pair list ({exc})") from exc
    if not isinstance(data, dict):
        raise MedsegInputError(path, "expected a JSON object")
    return data


def _check_exist(pairs: list[Pair], source: Path) -> None:
    for pair in pairs:
        for key in IMAGE_KEYS + LABEL_KEYS:
            if pair.get(key) is not None and not Path(pair[key]).is_file():
                raise MedsegInputError(source, f"pair '{pair['case']}' lists {pair[key]}, which does not exist")


def _entries(data: dict[str, Any], section: str, root: Path, source: Path) -> list[Pair]:
    out = []
    for index, entry in enumerate(data.get(section) or []):
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in IMAGE_KEYS):
            raise MedsegInputError(source, f"'{section}' entry {index} needs 'fixed' and 'moving' paths")
        name = str(entry.get("name") or f"{section}_{index:03d}")
        paths = [root / entry[k] if entry.get(k) else None for k in IMAGE_KEYS + LABEL_KEYS]
        out.append(make_pair_entry(name, *paths))
    return out


def _labels_of(data: dict[str, Any]) -> dict[int, str] | None:
    raw = data.get("labels")
    if not isinstance(raw, dict):
        return None
    out = {}
    for key, value in raw.items():
        if not str(key).isdigit():
            return None
        out[int(key)] = value if isinstance(value, str) else str(value)
    return out


@register_pair_layout("pairs_json")
def load_pairs_json(path: Path) -> PairSet:
    """medseg's ``pairs.json`` (a file, or a folder holding one)."""
    path = path / "pairs.json" if path.is_dir() else path
    data = _read_json(path)
    if not isinstance(data.get("pairs"), list) or not data["pairs"]:
        raise MedsegInputError(path, "has no 'pairs' list")
    root = path.parent
    train = _entries(data, "pairs", root, path)
    val = _entries(data, "val", root, path) if data.get("val") else None
    test = _entries(data, "test", root, path)
    for pairs in (train, val or [], test):
        _check_exist(pairs, path)
    return PairSet(path, train, val, test, labels=_labels_of(data))


def _twin_label(image: Path, images_dir: str = "imagesTr", labels_dir: str = "labelsTr") -> Path | None:
    parts = list(image.parts)
    if images_dir not in parts:
        return None
    parts[len(parts) - 1 - parts[::-1].index(images_dir)] = labels_dir
    candidate = Path(*parts)
    return candidate if candidate.is_file() else None


def subject_pairs(subjects: list[dict[str, Any]]) -> list[Pair]:
    """Every ordered pair ``(fixed, moving)`` of distinct subjects (inter-subject registration)."""
    return [
        make_pair_entry(f"{f['case']}__{m['case']}", f["image"], m["image"], f.get("labels"), m.get("labels"))
        for f, m in itertools.permutations(subjects, 2)
    ]


def _unpaired(source: Path, subjects: list[dict[str, Any]], labels: dict[int, str] | None = None) -> PairSet:
    if len(subjects) < 2:
        raise MedsegInputError(source, f"needs at least 2 subjects to form pairs (found {len(subjects)})")
    return PairSet(source, subject_pairs(subjects), subjects=subjects, labels=labels)


@register_pair_layout("learn2reg")
def load_learn2reg(path: Path) -> PairSet:
    """A Learn2Reg ``*_dataset.json`` (or a folder holding exactly one)."""
    if path.is_dir():
        found = sorted(path.glob("*dataset.json"))
        if len(found) != 1:
            raise MedsegInputError(path, f"expected one Learn2Reg '*_dataset.json' (found {len(found)})")
        path = found[0]
    data = _read_json(path)
    root = path.parent
    label_of: dict[str, Path | None] = {}
    for entry in data.get("training") or []:
        if isinstance(entry, dict) and isinstance(entry.get("image"), str):
            image = (root / entry["image"]).resolve()
            label = entry.get("label")
            label_of[str(image)] = (root / label).resolve() if isinstance(label, str) else _twin_label(image)

    def entry_pair(section: str, index: int, entry: Any) -> Pair:
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in IMAGE_KEYS):
            raise MedsegInputError(path, f"'{section}' entry {index} needs 'fixed' and 'moving' paths")
        f, m = ((root / entry[k]).resolve() for k in IMAGE_KEYS)
        name = f"{case_name(f)}__{case_name(m)}"
        return make_pair_entry(name, f, m, label_of.get(str(f), _twin_label(f)), label_of.get(str(m), _twin_label(m)))

    val = [entry_pair("registration_val", i, e) for i, e in enumerate(data.get("registration_val") or [])]
    paired = [entry_pair("training_paired_images", i, e) for i, e in enumerate(data.get("training_paired_images") or [])]
    val_images = {p[k] for p in val for k in IMAGE_KEYS}
    if paired:
        pairset = PairSet(path, [p for p in paired if p["fixed"] not in val_images], val or None)
    else:
        subjects = [
            {"case": case_name(image), "image": image, "labels": None if label is None else str(label)}
            for image, label in label_of.items()
            if image not in val_images
        ]
        pairset = replace(_unpaired(path, subjects), val=val or None)
    for pairs in (pairset.train, pairset.val or []):
        _check_exist(pairs, path)
    return pairset


@register_pair_layout("image_folders")
def load_image_folders(path: Path) -> PairSet:
    """An ``imagesTr/`` (+ ``labelsTr/``) folder of subjects (one file each), paired inter-subject."""
    from medseg.data.layouts import load_image_label_folders

    cases = load_image_label_folders(path)
    multi = [c["case"] for c in cases if len(c["image"]) != 1]
    if multi:
        raise MedsegInputError(path, f"registration takes one image per subject; '{multi[0]}' has several channels")
    subjects = [{"case": c["case"], "image": c["image"][0], "labels": c["label"]} for c in cases]
    return _unpaired(path, subjects)


@register_pair_layout("oasis")
def load_oasis_folders(path: Path, image: str = "aligned_norm.nii.gz", labels: tuple[str, ...] = ("aligned_seg35.nii.gz", "aligned_seg4.nii.gz")) -> PairSet:
    """neurite-OASIS: one folder per subject holding ``image`` and the first of ``labels`` present."""
    if not path.is_dir():
        raise MedsegInputError(path, "expected a folder of OASIS subject folders")
    subjects = []
    for folder in sorted(p for p in path.iterdir() if p.is_dir() and (p / image).is_file()):
        label = next((folder / name for name in labels if (folder / name).is_file()), None)
        subjects.append({"case": folder.name, "image": str((folder / image).resolve()), "labels": None if label is None else str(label.resolve())})
    return _unpaired(path, subjects)


def discover_pairs(path: str | Path, layout: str = "auto") -> PairSet:
    """Pairs of ``path`` read with ``layout`` (``auto``: pairs.json, Learn2Reg JSON, OASIS folders, imagesTr)."""
    path = Path(path)
    if layout != "auto":
        return PAIR_LAYOUTS.get(layout)(path)
    if not path.exists():
        raise MedsegInputError(path, "pair source not found")
    if path.is_file():
        return load_pairs_json(path) if path.name == "pairs.json" or "pairs" in _read_json(path) else load_learn2reg(path)
    if (path / "pairs.json").is_file():
        return load_pairs_json(path)
    if list(path.glob("*dataset.json")):
        return load_learn2reg(path)
    if (path / "imagesTr").is_dir():
        return load_image_folders(path)
    if any((p / "aligned_norm.nii.gz").is_file() for p in path.iterdir() if p.is_dir()):
        return load_oasis_folders(path)
    raise MedsegInputError(path, "no pairs found (expected pairs.json, a Learn2Reg *_dataset.json, imagesTr/ or OASIS subject folders)")


def split_pairs(
    pairset: PairSet, seed: int, val_fraction: float, val_names: list[str] | None = None
) -> tuple[list[Pair], list[Pair]]:
    """Deterministic train/validation split.

    ``val_names`` (``data.val_cases``) picks pairs by name (or, for unpaired sources, subjects by case
    name); otherwise the release's own validation pairs are used; otherwise a seeded ``val_fraction`` of
    the pairs (of the subjects for unpaired sources, whose validation pairs then join each validation
    subject to the next one, so no subject is seen in training and validation both).
    """
    if val_names is None and pairset.val is not None:
        return pairset.train, pairset.val
    units = pairset.subjects if pairset.subjects is not None else pairset.train
    key = "case"
    names = [u[key] for u in units]
    if val_names is not None:
        unknown = sorted(set(val_names) - set(names))
        if unknown:
            what = "subject" if pairset.subjects is not None else "pair"
            raise MedsegConfigError(f"data.val_cases: unknown {what}(s) {', '.join(unknown)}")
        val = set(val_names)
    else:
        n_val = math.ceil(len(units) * val_fraction) if val_fraction > 0 else 0
        if pairset.subjects is not None and n_val == 1:
            n_val = 2  # a validation pair needs two validation subjects
        order = np.random.default_rng(seed).permutation(len(units))
        val = {names[i] for i in order[:n_val]}
    if pairset.subjects is None:
        return [p for p in units if p["case"] not in val], [p for p in units if p["case"] in val]
    train_subjects = [s for s in units if s["case"] not in val]
    val_subjects = [s for s in units if s["case"] in val]
    val_pairs = [
        make_pair_entry(f"{f['case']}__{m['case']}", f["image"], m["image"], f.get("labels"), m.get("labels"))
        for f, m in zip(val_subjects, val_subjects[1:] + val_subjects[:1], strict=True)
    ] if len(val_subjects) > 1 else []
    return subject_pairs(train_subjects), val_pairs


def generate_pairs(kind: str, root: Path, n_train: int, n_test: int, seed: int, **options: Any) -> Path:
    """Run the registered pair generator ``kind``; returns its ``pairs.json``."""
    return PAIR_GENERATORS.get(kind)(root, n_train, n_test, seed, **options)


@register_pair_generator("mni152_pairs")
def mni152_pairs(root: Path, n_train: int, n_test: int = 0, seed: int = 0, **options: Any) -> Path:
    """MNI152-derived pairs (``pairs.json``): options ``resolution_mm`` (2), ``shape``, ``multiple_of``
    (32), ``fixed_contrast``/``moving_contrast`` (``t1``/``t2``), ``deformation`` (``large``/``small``/``multiscale`` or a
    dict of :class:`~medseg.data.mni152.DeformationSpec` fields), ``fixed_is_template`` (False)."""
    from medseg.data.mni152 import DeformationSpec, load_mni152, write_pairs

    grid = {k: options.pop(k) for k in ("resolution_mm", "shape", "multiple_of") if k in options}
    deformation = options.get("deformation")
    if isinstance(deformation, dict):
        options["deformation"] = DeformationSpec(**deformation)
    try:
        template = load_mni152(**grid)
        return write_pairs(root, n_train, seed=seed, template=template, n_test=n_test, force=True, **options)
    except (TypeError, ValueError) as exc:
        raise MedsegConfigError(f"data.synthetic.options: {exc}") from exc
