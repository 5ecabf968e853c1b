"""H-DenseUNet planned (``--method hdenseunet``): the method's 3-stage recipe, the dataset's values planned.

The recipe is the bundled pipeline (``liver_tumor_hdenseunet.yaml`` for a GPU, the CPU-scale
``liver_tumor_hdenseunet_phantom.yaml`` for ``--device cpu``): a coarse 3D UNet localiser, then the 2D
DenseUNet on 2.5D three-slice stacks, the hybrid with the 2D part frozen, and the end-to-end hybrid. Planned:
the data section, the target spacing (median rule), the CT preset from the foreground percentiles (every
stage shares it), the localiser's coarse spacing (the recipe's, never finer than the target) and every
stage's crop: the recipe's (paper: 224 x 224 in-plane, 12-slice chunks) clipped to the median case at the
stage's spacing and rounded down to the network's stride. The rest (losses, class weights, optimiser,
ROI margin, epochs, the post-processing) is the method's fixed choice, commented as such.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from medseg.config import bundled_pipeline, read_yaml_mapping
from medseg.errors import MedsegConfigError
from medseg.networks import create_network
from medseg.planning.fingerprint import Fingerprint
from medseg.planning.planner import GiB, Plan, Planned, Target, median_shape, plan_intensity, plan_spacing

#: recipe per target: the paper-scale pipeline for a GPU, the CPU-scale one otherwise
RECIPES = {"gpu": "liver_tumor_hdenseunet", "cpu": "liver_tumor_hdenseunet_phantom"}
#: datasets up to this many bytes (float32 images at the target spacing) are cached in memory
CACHE_LIMIT = 8 * GiB


def fixed(node: Any, source: str) -> Any:
    """Every leaf of a recipe section wrapped with its source as the reason."""
    if isinstance(node, dict) and node and all(isinstance(k, str) for k in node):
        return {k: fixed(v, source) for k, v in node.items()}
    return Planned(node, f"the method's fixed choice ({source})")


def crop(size: float, divisor: int, cap: int) -> int:
    """``min(size, cap)`` rounded down to a multiple of ``divisor`` (at least one multiple)."""
    return max(divisor, int(min(size, cap) // divisor) * divisor)


def network_divisor(name: str, kwargs: dict[str, Any]) -> list[int]:
    """What the network's input sizes must be multiples of, per axis (its ``size_divisor``; UNet: its strides)."""
    if name == "unet":
        filters = kwargs.get("filters", [])
        strides = kwargs.get("strides") or [1] + [2] * (len(filters) - 1)
        return [math.prod(s if isinstance(s, int) else s[a] for s in strides) for a in range(3)]
    value = getattr(create_network(name, **kwargs), "size_divisor", 1)
    values = [int(v) for v in value] if isinstance(value, (tuple, list)) else [int(value)] * 3
    return (values + [1])[:3]  # a 2D network's divisor: the third axis is the slice axis


def _stage_crop(stage: dict[str, Any], shape: np.ndarray, source: str, where: str) -> Planned:
    """The stage's recipe crop clipped to the median ``shape`` at the stage's spacing, in stride multiples."""
    net = stage["network"]
    recipe = [int(p) for p in stage["train"]["patch_size"]]
    divisor = network_divisor(net["name"], dict(net.get("kwargs", {})))
    axis = net.get("slice_axis")
    planned = [1 if a == axis else crop(s, d, r) for a, (s, d, r) in enumerate(zip(shape, divisor, recipe))]
    sizes = ", ".join(f"{s:.0f}" for s in shape)
    return Planned(planned, f"{source}'s crop {recipe} clipped to the median case at {where} ({sizes}), "
                            f"rounded down to the network's stride {divisor}")


def plan_hdenseunet(fp: Fingerprint, target: Target, data: dict[str, Any], name: str) -> Plan:
    """H-DenseUNet's recipe with the dataset's values (see the module docstring); ``data``: the planned data section."""
    if len(fp.modalities) != 1:
        raise MedsegConfigError(f"--method hdenseunet: takes one CT channel; {fp.source} has {len(fp.modalities)} ({', '.join(fp.modalities)})")
    if sorted(fp.labels) != [0, 1, 2]:
        raise MedsegConfigError(f"--method hdenseunet: needs labels 0 (background), 1 (organ), 2 (lesion); {fp.source} has {sorted(fp.labels)}")
    path = bundled_pipeline(RECIPES["gpu" if target.gpu else "cpu"])
    source = f"pipelines/{path.name}"
    raw = read_yaml_mapping(path)
    recipe_stages = raw.pop("stages")
    tree: dict[str, Any] = {k: fixed(v, source) for k, v in raw.items()}
    tree["name"] = Planned(name, "planned by medseg plan")
    tree["description"] = Planned(f"H-DenseUNet cascade planned for {fp.source} ({len(fp.cases)} labelled cases)", "medseg plan")
    spacing = plan_spacing(fp)
    shape = median_shape(fp, spacing.value)
    dataset_bytes = 4 * float(np.sum(np.prod(fp.shapes() * fp.spacings() / np.asarray(spacing.value), axis=1)))
    data["cache"] = Planned(dataset_bytes <= CACHE_LIMIT, f"{dataset_bytes / GiB:.1f} GB of float32 images at the target spacing "
                                                          f"({'<=' if dataset_bytes <= CACHE_LIMIT else '>'} {CACHE_LIMIT / GiB:g} GB: cached in memory or not)")
    tree["data"] = data
    tree["preprocess"] = {
        **plan_intensity(fp),
        "target_spacing": spacing,
        "orientation": Planned("RAS", "training orientation (slice axis 2 = S: axial slices)"),
    }
    stages = []
    for recipe in recipe_stages:
        stage = {k: fixed(v, source) for k, v in recipe.items() if k != "preprocess"}
        where = "the target spacing"
        stage_shape = shape
        coarse = recipe.get("preprocess", {}).get("target_spacing")
        if coarse is not None:  # the localiser: coarse voxels
            planned = [round(max(float(c), s), 3) for c, s in zip(coarse, spacing.value)]
            stage["preprocess"] = {"target_spacing": Planned(planned, f"{source}'s localiser spacing {coarse}, never finer than the target spacing")}
            stage_shape = median_shape(fp, planned)
            where = "the localiser spacing"
        stage["train"]["patch_size"] = _stage_crop(recipe, stage_shape, source, where)
        stages.append(stage)
    tree["stages"] = stages
    crops = ", ".join(f"{s['name'].value}: {s['train']['patch_size'].value}" for s in stages)
    return Plan(tree, [f"hdenseunet: recipe of {source}; data, spacing, CT preset and crops planned ({crops})"])


__all__ = ["RECIPES", "crop", "fixed", "network_divisor", "plan_hdenseunet"]
