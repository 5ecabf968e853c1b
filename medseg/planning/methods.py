"""Per-method plans: the dataset-dependent values from the planner, the method's fixed choices kept.

``unet`` is planned from scratch (nnU-Net-style 3D UNet). The paper methods start from their bundled
pipeline (the method's recipe) and take the dataset's data section, spacing, intensity preset (unless the
method fixes it), channel counts and patch from the plan; every value they keep is commented with its source.
H-DenseUNet (staged) is planned by :mod:`medseg.planning.staged`, MICDIR and VoxelMorph (pairs) by
:mod:`medseg.planning.registration`.
"""

from __future__ import annotations

from typing import Any

from medseg.config import bundled_pipeline, read_yaml_mapping
from medseg.data.pairs import PairSet
from medseg.errors import MedsegConfigError
from medseg.planning.fingerprint import Fingerprint
from medseg.planning.planner import (
    Plan,
    Planned,
    Target,
    median_shape,
    plan_intensity,
    plan_patch,
    plan_spacing,
)
from medseg.planning.registration import RECIPES as REGISTRATION
from medseg.planning.registration import plan_registration
from medseg.planning.staged import fixed, plan_hdenseunet

#: method -> its bundled recipe (the fixed choices)
TEMPLATES = {"ivdnet": "ivd_ivdnet", "nested": "brats_nested", "dsaif": "semisup_dsaif"}
METHODS = ["unet", "hdenseunet", *TEMPLATES, *REGISTRATION]


def data_section(fp: Fingerprint, dataset: str, layout: str) -> dict[str, Any]:
    return {
        "dataset": Planned(dataset, "the planned dataset"),
        **({"layout": Planned(layout, "dataset layout")} if layout != "auto" else {}),
        "labels": Planned({int(k): v for k, v in fp.labels.items()}, "labels of the dataset"),
        "modalities": Planned(list(fp.modalities), "channels of the dataset, in file order"),
        "val_fraction": Planned(0.2, "single-split training; `medseg train --folds 5` cross-validates instead"),
    }


def plan_unet(fp: Fingerprint, target: Target, dataset: str, layout: str, name: str) -> Plan:
    """nnU-Net-style 3D UNet plan (see :mod:`medseg.planning.planner`)."""
    spacing = plan_spacing(fp)
    base, cap = (32, 320) if target.gpu else (8, 64)
    n_out = len(fp.labels)
    patch = plan_patch(fp, spacing.value, len(fp.modalities), n_out, target, base, cap)
    kw = patch.kwargs
    width = f"widths double from {base} up to {cap} ({'GPU' if target.gpu else 'CPU'} profile)"
    levels = "pooling per axis while the feature map stays >= 4 voxels and the spacing <= 2x the finest"
    gpu = target.gpu
    tree = {
        "name": Planned(name, "planned by medseg plan"),
        "description": Planned(f"3D UNet planned for {fp.source} ({len(fp.cases)} labelled cases)", "medseg plan"),
        "seed": Planned(0, "deterministic folds and sampling"),
        "data": data_section(fp, dataset, layout),
        "preprocess": {
            **plan_intensity(fp),
            "target_spacing": spacing,
            "orientation": Planned("RAS", "training orientation (spacing and shapes above are along R, A, S)"),
        },
        "network": {
            "name": Planned("unet", "method unet: nnU-Net-style 3D UNet (MONAI DynUNet)"),
            "kwargs": {
                "spatial_dims": Planned(3, "3D full resolution"),
                "in_channels": Planned(kw["in_channels"], "one channel per modality"),
                "out_channels": Planned(kw["out_channels"], "one per label, background included"),
                "filters": Planned(kw["filters"], width),
                "strides": Planned(kw["strides"], levels),
                "kernel_size": Planned(kw["kernel_size"], "3 along axes within 2x the finest spacing, else 1"),
            },
        },
        "loss": {"name": Planned("dice_ce", "nnU-Net: Dice + cross-entropy"), "kwargs": Planned({"batch": True}, "batch Dice")},
        "train": {
            "epochs": Planned(1000 if gpu else 100, "nnU-Net: 1000 epochs of 250 iterations" if gpu else "CPU profile: 100 epochs"),
            **({"iterations_per_epoch": Planned(250, "nnU-Net's epoch length")} if gpu else {}),
            "batch_size": Planned(patch.batch, patch.reason_batch),
            "patch_size": Planned(patch.patch, patch.reason_patch),
            "samples_per_volume": Planned(2, "patches drawn per loaded case"),
            "pos_fraction": Planned(0.33, "nnU-Net: a third of the patches centred on foreground"),
            **plan_optimizer(gpu),
            "lr_schedule": Planned("poly", "nnU-Net: (1 - epoch / epochs)^0.9"),
            "amp": Planned(gpu, "mixed precision on the GPU" if gpu else "CPU: full precision"),
            "val_every": Planned(5 if not gpu else 10, "validation cost vs. checkpoint choice"),
        },
        "inference": {
            "overlap": Planned(0.5, "nnU-Net's sliding-window overlap"),
            "sw_batch_size": Planned(2 if not gpu else 4, "windows per network call"),
        },
    }
    note = f"patch {patch.patch}, batch {patch.batch}, step memory {'measured' if patch.measured else 'estimated'} {patch.memory / 2**30:.2f} GB"
    return Plan(tree, [note])


def plan_optimizer(gpu: bool) -> dict[str, Planned]:
    """nnU-Net's SGD on the GPU; Adam on the CPU profile, whose budget is a few hundred steps, not 250k.

    Measured (pipelines/README.md, "Demo planned by medseg plan"): on the demo phantoms at demo.yaml's budget
    (450 steps) the planned UNet with nnU-Net's SGD (lr 0.01, momentum 0.99) reached a held-out lesion Dice of
    0.014, the same plan with Adam 5e-3 0.940 (demo.yaml: 0.914).
    """
    if gpu:
        return {
            "optimizer": Planned("sgd", "nnU-Net: SGD, Nesterov momentum 0.99, lr 0.01, poly decay"),
            "lr": Planned(0.01, "nnU-Net's initial learning rate"),
            "momentum": Planned(0.99, "nnU-Net"),
            "weight_decay": Planned(3.0e-5, "nnU-Net"),
        }
    why = "CPU profile: Adam; nnU-Net's SGD (momentum 0.99) missed the lesions in the demo's 450 steps (pipelines/README.md)"
    return {
        "optimizer": Planned("adam", why),
        "lr": Planned(0.005, "CPU profile: Adam 5e-3, as the demo (measured on the demo phantoms)"),
        "weight_decay": Planned(0.0, "CPU profile: none over a few hundred steps"),
    }


def plan_from_template(method: str, fp: Fingerprint, target: Target, dataset: str, layout: str, name: str) -> Plan:
    """A paper method's recipe with the dataset-dependent values planned."""
    path = bundled_pipeline(TEMPLATES[method])
    source = f"pipelines/{path.name}"
    raw = read_yaml_mapping(path)
    tree = {k: fixed(v, source) for k, v in raw.items()}
    tree["name"] = Planned(name, "planned by medseg plan")
    data = data_section(fp, dataset, layout)
    if "val_fraction" in raw.get("data", {}):
        data["val_fraction"] = Planned(raw["data"]["val_fraction"], f"the method's split ({source})")
    tree["data"] = data
    pre = tree.setdefault("preprocess", {})
    spacing = plan_spacing(fp)
    pre["target_spacing"] = spacing
    if raw.get("preprocess", {}).get("intensity") in (None, "ct", "mri"):
        for key in ("intensity", "ct_window", "ct_offset", "ct_scale"):
            pre.pop(key, None)
        pre.update(plan_intensity(fp))
    kwargs = tree["network"]["kwargs"]
    n_in, n_out = len(fp.modalities), len(fp.labels)
    for key, value, why in (("in_channels", n_in, "one channel per modality"), ("n_modalities", n_in, "one path per modality"),
                            ("n_classes", n_out, "one per label, background included")):
        if key in kwargs:
            kwargs[key] = Planned(value, why)
    if "out_channels" in kwargs and raw.get("output", {}).get("kind", "labels") == "labels":
        kwargs["out_channels"] = Planned(n_out, "one per label, background included")
    patch = list(raw.get("train", {}).get("patch_size", [96, 96, 96]))
    shape = median_shape(fp, spacing.value)
    axis = raw.get("network", {}).get("slice_axis")
    planned = [1 if a == axis else int(min(p, max(16, 16 * (s // 16)))) for a, (p, s) in enumerate(zip(patch, shape))]
    if planned != patch:
        tree["train"]["patch_size"] = Planned(planned, f"{source}'s patch clipped to the median shape ({', '.join(f'{s:.0f}' for s in shape)}) in multiples of 16")
    return Plan(tree, [f"{method}: recipe of {source}; data, spacing, intensity, channels and patch planned"])


def build_plan(
    method: str, fp: Fingerprint, target: Target, dataset: str, layout: str = "auto", name: str = "planned", pairs: PairSet | None = None
) -> Plan:
    """The plan for ``method`` (one of :data:`METHODS`); ``pairs``: the pair source of a registration method."""
    if method == "unet":
        return plan_unet(fp, target, dataset, layout, name)
    if method == "hdenseunet":
        return plan_hdenseunet(fp, target, data_section(fp, dataset, layout), name)
    if method in TEMPLATES:
        return plan_from_template(method, fp, target, dataset, layout, name)
    if method in REGISTRATION:
        if pairs is None:
            raise MedsegConfigError(f"--method {method}: plans from a pair source (pairs.json, Learn2Reg JSON, imagesTr/ or OASIS folders)")
        return plan_registration(method, fp, target, data_section(fp, dataset, layout), name, pairs)
    raise MedsegConfigError(f"--method {method}: unknown method (known: {', '.join(METHODS)})")


__all__ = ["METHODS", "build_plan", "plan_from_template", "plan_unet"]
