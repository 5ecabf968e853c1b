"""MICDIR and VoxelMorph planned (``--method micdir|voxelmorph``) on a registration pair source.

The recipe is the bundled pipeline (``brain_micdir.yaml`` / ``brain_voxelmorph.yaml``: network, loss
weights, optimiser, epochs). Planned from the pair source (any layout :func:`medseg.data.pairs.discover_pairs`
reads) and its fingerprint (every distinct image of the pairs, labelled or not):

* target spacing: the median rule of :func:`medseg.planning.planner.plan_spacing`;
* intensity: the method's min-max preset (percentile clip, then [0, 1]: MICDIR's code, for every modality;
  the similarity losses and the networks' inputs assume it);
* training grid: the whole volume (the largest image at the target spacing, rounded up to the network's
  stride: volumes are padded to it, as in the recipes), shrunk along its longest axis while the estimated
  step (batch 1, fixed and moving) does not fit the memory budget (then random crops of that size train);
* similarity: the recipe's unless ``pairs.json`` names different contrasts for fixed and moving images
  (intermodal: mutual information);
* iterations per epoch: one pass over the training pairs after the validation split (at most 250).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from medseg.config import bundled_pipeline, read_yaml_mapping
from medseg.data.layouts import Case
from medseg.data.pairs import IMAGE_KEYS, LABEL_KEYS, PairSet, split_pairs
from medseg.errors import MedsegConfigError
from medseg.planning.fingerprint import Fingerprint
from medseg.planning.memory import estimate_step_memory
from medseg.planning.planner import GiB, Plan, Planned, Target, plan_spacing
from medseg.planning.staged import fixed, network_divisor

RECIPES = {"micdir": "brain_micdir", "voxelmorph": "brain_voxelmorph"}
MAX_ITERATIONS = 250  # nnU-Net's epoch length, for unpaired sources whose ordered pairs grow as N^2


def pair_cases(pairs: PairSet) -> list[Case]:
    """Every distinct image of the training and validation pairs as a case ``{"case", "image": [path], "label"}``."""
    seen: dict[str, Case] = {}
    for pair in [*pairs.train, *(pairs.val or [])]:
        for image_key, label_key in zip(IMAGE_KEYS, LABEL_KEYS, strict=True):
            path = pair[image_key]
            if path not in seen:
                seen[path] = {"case": f"{pair['case']}/{image_key}", "image": [path], "label": pair.get(label_key)}
    if pairs.subjects is not None:  # unpaired sources: name the images by subject
        names = {s["image"]: s["case"] for s in pairs.subjects}
        for path, case in seen.items():
            case["case"] = names.get(path, case["case"])
    return list(seen.values())


def intermodal(pairs: PairSet) -> bool | None:
    """Whether fixed and moving contrasts differ, as medseg's ``pairs.json`` records them; ``None``: not recorded."""
    path = pairs.source / "pairs.json" if pairs.source.is_dir() else pairs.source
    try:
        entries = json.loads(path.read_text(encoding="utf-8")).get("pairs", [])
    except (OSError, ValueError, AttributeError):
        return None
    contrasts = [(e.get("fixed_contrast"), e.get("moving_contrast")) for e in entries if isinstance(e, dict)]
    if not contrasts or any(None in c for c in contrasts):
        return None
    return any(f != m for f, m in contrasts)


def plan_grid(method: str, kwargs: dict[str, Any], fp: Fingerprint, spacing: list[float], target: Target, batch: int) -> tuple[list[int], str]:
    """The training grid (see the module docstring) and its reason."""
    divisor = network_divisor(method, kwargs)
    largest = np.max(fp.shapes() * fp.spacings() / np.asarray(spacing), axis=0)
    grid = [max(d, math.ceil(s / d) * d) for s, d in zip(largest, divisor)]
    memory = estimate_step_memory(method, kwargs, divisor, pair=True)
    sizes = ", ".join(f"{s:.0f}" for s in largest)
    whole = list(grid)
    while memory.bytes(grid, batch) > target.memory and max(g // d for g, d in zip(grid, divisor)) > 1:
        axis = int(np.argmax([g / d for g, d in zip(grid, divisor)]))
        grid[axis] -= divisor[axis]
    need = memory.bytes(grid, batch) / GiB
    if grid == whole:
        return grid, (f"the whole volume: the largest image at the target spacing ({sizes}) rounded up to the network's "
                      f"stride {divisor}; step estimated {need:.2f} GB <= {target.budget_text}")
    return grid, (f"random crops: the whole volume {whole} shrunk along its longest axis until the estimated step fits "
                  f"{target.budget_text} ({need:.2f} GB)")


def plan_registration(method: str, fp: Fingerprint, target: Target, data: dict[str, Any], name: str, pairs: PairSet) -> Plan:
    """``method``'s recipe with the pair source's values (see the module docstring)."""
    if len(fp.modalities) != 1:
        raise MedsegConfigError(f"--method {method}: registers one image to one image; {fp.source} has {len(fp.modalities)} channels")
    path = bundled_pipeline(RECIPES[method])
    source = f"pipelines/{path.name}"
    raw = read_yaml_mapping(path)
    tree: dict[str, Any] = {k: fixed(v, source) for k, v in raw.items()}
    tree["name"] = Planned(name, "planned by medseg plan")
    tree["description"] = Planned(f"{method} registration planned for {fp.source} ({len(fp.cases)} images)", "medseg plan")
    if pairs.val is None:
        data["val_fraction"] = Planned(raw["data"]["val_fraction"], f"the method's split ({source})")
    else:
        data.pop("val_fraction")  # the source names its validation pairs
    tree["data"] = data
    spacing = plan_spacing(fp)
    tree["preprocess"] = {
        "intensity": Planned("minmax", f"the method's preset ({source}, MICDIR's code): percentile clip, then [0, 1], any modality"),
        "minmax_percentiles": fixed(raw["preprocess"]["minmax_percentiles"], source),
        "target_spacing": spacing,
        "orientation": Planned("RAS", "canonical orientation of the network grid"),
    }
    kwargs = dict(raw["network"]["kwargs"])
    tree["network"]["kwargs"]["in_channels"] = Planned(1, "one channel per image (fixed and moving alike)")
    train = tree["train"]
    batch = int(raw["train"]["batch_size"])
    grid, why = plan_grid(method, kwargs, fp, spacing.value, target, batch)
    train["patch_size"] = Planned(grid, why)
    n_train = len(split_pairs(pairs, int(raw.get("seed", 0)), float(raw["data"]["val_fraction"]))[0])
    train["iterations_per_epoch"] = Planned(min(n_train, MAX_ITERATIONS), f"one pass over the {n_train} training pairs (at most {MAX_ITERATIONS})")
    modal = intermodal(pairs)
    if modal:
        tree["loss"]["kwargs"]["similarity"] = Planned("mi", "fixed and moving contrasts differ (pairs.json): mutual information")
    elif modal is False:
        tree["loss"]["kwargs"]["similarity"].reason += "; same contrast for fixed and moving (pairs.json)"
    notes = [f"{method}: recipe of {source}; data, spacing, training grid {grid} and epoch length planned"]
    if modal is None:
        notes.append("the pair source does not record contrasts: for intermodal pairs set loss.kwargs.similarity: mi")
    return Plan(tree, notes)


__all__ = ["RECIPES", "intermodal", "pair_cases", "plan_grid", "plan_registration"]
