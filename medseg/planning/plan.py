"""``medseg plan``: dataset -> ``fingerprint.json`` + a commented pipeline YAML that validates, or a preflight."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from medseg.config import validate_pipeline
from medseg.config.stages import validate_stages
from medseg.data.layouts import Case, discover_cases, load_image_label_folders
from medseg.data.pairs import PairSet, discover_pairs
from medseg.errors import MedsegConfigError
from medseg.io.atomic import write_text
from medseg.io.checks import Problem, check_image, check_label
from medseg.io.image_io import read_image
from medseg.planning.fingerprint import fingerprint_cases
from medseg.planning.methods import REGISTRATION, build_plan
from medseg.planning.planner import GiB, Target, planning_warnings, spacing_outliers
from medseg.planning.registration import pair_cases
from medseg.planning.render import render_yaml

#: modality names of the registered layouts (their loaders return the images in this order)
LAYOUT_MODALITIES = {"brats": ["T1", "T1ce", "T2", "FLAIR"], "ivdm3seg": ["fat", "inn", "opp", "wat"], "lits": ["CT"], "msd_liver": ["CT"]}


@dataclass
class Dataset:
    """A dataset to plan: its cases, modality names and declared labels (``None``: the values found)."""

    path: Path
    layout: str
    cases: list[Case]
    modalities: list[str]
    labels: dict[int, str] | None = None
    notes: list[str] = field(default_factory=list)


def _description(path: Path) -> dict[str, Any]:
    candidate = path if path.suffix == ".json" else path / "dataset.json"
    if candidate.is_file():
        try:
            return json.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return {}
    return {}


def _labels(meta: dict[str, Any]) -> dict[int, str] | None:
    raw = meta.get("labels")
    if not isinstance(raw, dict) or not raw:
        return None
    try:  # Decathlon / nnU-Net v1: {"0": "background"}; nnU-Net v2: {"background": 0} (regions not handled)
        return {int(k): str(v) for k, v in raw.items()}
    except ValueError:
        return {int(v): str(k) for k, v in raw.items() if isinstance(v, int)}


def _guess_modality(path: str) -> str:
    """CT when the image holds values below -500 (air in Hounsfield units), else MR."""
    array, _ = read_image(path, "image", allow_channels=True, check_finite=False)
    return "CT" if float(np.nanmin(array)) < -500 else "MR"


def describe_dataset(path: str | Path, layout: str = "auto", modalities: list[str] | None = None) -> Dataset:
    """Cases of any layout medseg reads, with modality names (dataset.json, the layout, ``modalities`` or a guess)."""
    path = Path(path)
    meta = _description(path) if layout == "auto" else {}
    if layout == "auto" and path.is_dir() and meta and "training" not in meta:  # nnU-Net v2 dataset.json: no case list
        cases = load_image_label_folders(path)
    else:
        cases = discover_cases(path, layout)
    n_channels = len(cases[0]["image"])
    names = modalities or meta.get("channel_names") or meta.get("modality") or LAYOUT_MODALITIES.get(layout)
    notes = []
    if isinstance(names, dict):
        names = [str(names[k]) for k in sorted(names, key=int)]
    if not names:
        names = [_guess_modality(p) for p in cases[0]["image"]]
        notes.append(f"modalities guessed from intensities: {', '.join(names)} (give --modalities to name them)")
    if len(names) != n_channels:
        raise MedsegConfigError(f"{path}: {len(names)} modality name(s) for {n_channels} channel(s) per case")
    return Dataset(path, layout, cases, list(names), _labels(meta), notes)


def describe_pairs(path: str | Path, layout: str = "auto", modalities: list[str] | None = None) -> tuple[Dataset, PairSet]:
    """A registration pair source (any layout :func:`~medseg.data.pairs.discover_pairs` reads) as the
    distinct images of its pairs, with its modality name (``modalities`` or a guess)."""
    pairs = discover_pairs(path, layout)
    cases = pair_cases(pairs)
    names = modalities or [_guess_modality(cases[0]["image"][0])]
    notes = [] if modalities else [f"modality guessed from intensities: {names[0]} (give --modalities to name it)"]
    if len(names) != 1:
        raise MedsegConfigError(f"{path}: registration pairs have one image each; got {len(names)} modality names")
    return Dataset(Path(path), layout, cases, list(names), pairs.labels, notes), pairs


def parse_memory(text: str) -> int:
    """``24GB`` / ``24 GiB`` / ``16000MB`` -> bytes (GB read as GiB, as GPU vendors print them)."""
    t = text.strip().upper().replace(" ", "").removesuffix("B").removesuffix("I")
    factor = {"G": GiB, "M": 1024**2, "T": 1024**4}.get(t[-1:], None)
    try:
        return int(float(t[:-1] if factor else t) * (factor or GiB))
    except ValueError:
        raise MedsegConfigError(f"--gpu-memory: '{text}' is not a size such as 24GB") from None


def resolve_target(gpu_memory: str | None, device: str) -> Target:
    """What to plan for: ``--gpu-memory`` (a GPU of that size; measured when one is here), ``--device cpu``,
    or (``auto``) the GPU that is here, else the CPU profile."""
    here = torch.cuda.is_available()
    if device == "cpu":
        return Target("cpu", 2 * GiB, False)
    if gpu_memory is not None:
        return Target("cuda" if device == "auto" else device, parse_memory(gpu_memory), here)
    if device.startswith("cuda") or (device == "auto" and here):
        dev = torch.device("cuda" if device == "auto" else device)
        total = torch.cuda.get_device_properties(dev).total_memory
        return Target(str(dev), int(total * 0.85), True)
    return Target("cpu", 2 * GiB, False)


def plan_dataset(
    dataset: str | Path,
    out: str | Path,
    *,
    method: str = "unet",
    target: Target | None = None,
    layout: str = "auto",
    modalities: list[str] | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Fingerprint ``dataset``, plan ``method`` for ``target`` and write ``out`` (pipeline YAML) and
    ``fingerprint.json`` next to it. The YAML is validated before anything is written.

    Returns ``{"pipeline", "fingerprint", "config" (raw mapping), "notes", "warnings"}``.
    """
    target = target or resolve_target(None, "auto")
    out = Path(out)
    pairs = None
    if method in REGISTRATION:
        ds, pairs = describe_pairs(dataset, layout, modalities)
    else:
        ds = describe_dataset(dataset, layout, modalities)
    fp = fingerprint_cases(ds.cases, str(ds.path), ds.modalities, ds.labels, unlabelled=pairs is not None)
    rel = os.path.relpath(Path(dataset).resolve(), out.resolve().parent)
    plan = build_plan(method, fp, target, rel, layout, name or out.stem, pairs)
    what = f"{len(fp.cases)} images of {len(pairs.train)} training pairs" if pairs else f"{len(fp.cases)} labelled cases"
    train = {
        "hdenseunet": "Train: medseg train THIS.yaml -o RUN (every stage in order; the model is RUN/hybrid/model).",
        **{m: "Train: medseg train THIS.yaml -o RUN; then medseg register -m RUN/model --fixed F --moving M -o moved.nii.gz." for m in REGISTRATION},
    }.get(method, "Train: medseg train THIS.yaml --folds 5 -o RUN; then medseg ensemble RUN -o model_ens.")
    header = [
        f"Planned by `medseg plan` for {ds.path} ({what}, {', '.join(fp.modalities)}; method {method},",
        f"target {target.device}, {target.budget_text}). The dataset's fingerprint: fingerprint.json next to this file.",
        train,
    ]
    text = render_yaml(plan, header)
    raw = yaml.safe_load(text)
    if "stages" in raw:  # every stage merged over the shared keys and validated, as `medseg train` does
        validate_stages(raw, out, out.parent / "RUN")
    else:
        validate_pipeline(raw, source=str(out), base_dir=out.parent)
    out.parent.mkdir(parents=True, exist_ok=True)
    fp_path = fp.save(out.parent / "fingerprint.json")
    write_text(out, text)
    return {"pipeline": str(out), "fingerprint": str(fp_path), "config": raw, "notes": ds.notes + plan.notes,
            "warnings": spacing_outliers(fp) if pairs else planning_warnings(fp)}


def preflight(dataset: str | Path, layout: str = "auto", modalities: list[str] | None = None, folds: int = 5) -> tuple[list[Problem], list[str]]:
    """What would break training (every image and label checked, as ``medseg check``) and planning warnings.

    Returns ``(problems, warnings)``; the fingerprint (and its warnings) only when no file has a problem.
    """
    ds = describe_dataset(dataset, layout, modalities)
    problems: list[Problem] = []
    labelled = 0
    for case in ds.cases:
        geometry = None
        for image in case["image"]:
            found, g = check_image(image, allow_channels=len(case["image"]) == 1)
            problems += found
            geometry = geometry or g
        if case["label"]:
            labelled += 1
            problems += check_label(case["label"], sorted(ds.labels) if ds.labels else None, geometry)
    warnings = list(ds.notes)
    if labelled < 2:
        problems.append(Problem(str(ds.path), f"{labelled} labelled case(s)", "training needs at least 2 labelled cases"))
    if not problems:
        fp = fingerprint_cases(ds.cases, str(ds.path), ds.modalities, ds.labels)
        warnings += planning_warnings(fp, folds)
    return problems, warnings


__all__ = ["Dataset", "describe_dataset", "describe_pairs", "parse_memory", "plan_dataset", "preflight", "resolve_target"]
