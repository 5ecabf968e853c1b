"""``medseg plan --method hdenseunet|micdir|voxelmorph`` on generated phantoms, checked against rules written here."""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from medseg.config import load_pipeline
from medseg.config.stages import load_stages
from medseg.data.pairs import discover_pairs, generate_pairs
from medseg.data.registry import generate_phantom
from medseg.networks import create_network
from medseg.planning.memory import estimate_step_memory
from medseg.planning.plan import plan_dataset, resolve_target
from medseg.planning.planner import GiB, Target
from tests.conftest import run_medseg
from tests.planning.test_plan import _foreground

CPU = resolve_target(None, "cpu")
GPU24 = Target("cuda", 24 * GiB, measure=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("methods")
    generate_phantom("liver_phantom", root / "liver", 3, 0, 0, field_of_view_mm=(150.0, 120.0, 90.0),
                     spacing_xy_mm=(2.0, 2.5), spacing_z_mm=(3.0, 5.0))
    tiny = {"resolution_mm": 6, "multiple_of": 8}
    generate_pairs("mni152_pairs", root / "pairs", 4, 0, 0, **tiny)
    generate_pairs("mni152_pairs", root / "t2pairs", 2, 0, 1, moving_contrast="t2", **tiny)
    return {"liver": root / "liver", "pairs": root / "pairs", "t2pairs": root / "t2pairs"}


def _ras(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Shape and spacing of an image along R, A, S (read with nibabel, independently of the planner)."""
    img = nib.load(str(path))
    world = nib.orientations.io_orientation(img.affine)[:, 0].astype(int)
    shape, spacing = np.zeros(3), np.zeros(3)
    for voxel_axis, world_axis in enumerate(world):
        shape[world_axis] = img.shape[voxel_axis]
        spacing[world_axis] = img.header.get_zooms()[voxel_axis]
    return shape, spacing


def _every_value_has_a_reason(pipeline: str | Path) -> None:
    for line in Path(pipeline).read_text().splitlines():
        if line.strip() and not line.startswith("#") and not line.rstrip().endswith(":"):
            assert "  # " in line, f"value without a reason: {line}"


@pytest.mark.parametrize("target", [CPU, GPU24], ids=["cpu", "gpu24"])
def test_hdenseunet(data: dict[str, Path], tmp_path: Path, target: Target) -> None:
    result = plan_dataset(data["liver"], tmp_path / "hd.yaml", method="hdenseunet", target=target)
    _every_value_has_a_reason(result["pipeline"])
    stages = load_stages(result["pipeline"], tmp_path / "run")  # every stage validates as `medseg train` merges it
    assert [s.name for s in stages] == ["localiser", "dense2d", "hybrid_3d", "hybrid"]
    raw = result["config"]
    images = sorted((data["liver"] / "imagesTr").glob("*.nii.gz"))
    geometry = [_ras(p) for p in images]
    spacing = np.median([s for _, s in geometry], axis=0)
    assert raw["preprocess"]["target_spacing"] == pytest.approx(spacing, abs=1e-3)  # no axis is 3x the finest: the median
    median = np.median([sh * sp / spacing for sh, sp in geometry], axis=0)  # median case at the target spacing
    fg = _foreground(data["liver"]).astype(float)
    lo, hi = (float(v) for v in np.percentile(fg, [0.5, 99.5]))
    for stage in stages:  # one CT preset from the foreground for every stage (the recipe's fixed HU window is replaced)
        pre = stage.config.preprocess
        assert pre.intensity == "ct" and pre.ct_window == pytest.approx((lo, hi), abs=0.05 * (hi - lo))
        assert pre.ct_scale == pytest.approx(float(fg.std()), rel=0.1)
    by_name = {s.name: s.config for s in stages}
    # 2.5D crops: the recipe's in-plane crop (paper 224 on a GPU; the CPU recipe's 64), smaller where the median
    # case is smaller, in multiples of the DenseUNet's stride 32; chunks of 12 (GPU) / 8 (CPU) slices, stride 4
    crop, chunk = (224, 12) if target.gpu else (64, 8)
    inplane = [max(32, int(min(crop, m) // 32) * 32) for m in median[:2]]
    assert list(by_name["dense2d"].train.patch_size) == [*inplane, 1]
    assert by_name["dense2d"].network.slice_context == 1 and by_name["dense2d"].network.kwargs["in_channels"] == 3
    depth = max(4, int(min(chunk, median[2]) // 4) * 4)
    for name in ("hybrid_3d", "hybrid"):
        assert list(by_name[name].train.patch_size) == [*inplane, depth]
    assert by_name["hybrid_3d"].train.freeze == ["net2d"] and by_name["hybrid"].train.freeze == []
    # the localiser: the recipe's coarse voxels (never finer than the target), a crop within its median case
    localiser = by_name["localiser"]
    coarse = np.maximum([3.0, 3.0, 5.0] if target.gpu else [6.0, 6.0, 6.0], spacing)
    assert list(localiser.preprocess.target_spacing) == pytest.approx(coarse, abs=1e-3)
    kw = localiser.network.kwargs
    strides = kw.get("strides") or [1] + [2] * (len(kw["filters"]) - 1)
    divisor = [math.prod(s if isinstance(s, int) else s[a] for s in strides) for a in range(3)]
    coarse_median = np.median([sh * sp / coarse for sh, sp in geometry], axis=0)
    for size, d, m in zip(localiser.train.patch_size, divisor, coarse_median):
        assert size % d == 0 and (size <= m or size == d)
    assert by_name["hybrid"].output.kind == "liver_tumor"


def _pair_images(root: Path) -> list[Path]:
    return sorted(root.glob("pair_*/fixed.nii.gz")) + sorted(root.glob("pair_*/moving.nii.gz"))


@pytest.mark.parametrize("method", ["micdir", "voxelmorph"])
def test_registration(data: dict[str, Path], tmp_path: Path, method: str) -> None:
    result = plan_dataset(data["pairs"], tmp_path / f"{method}.yaml", method=method, target=CPU)
    _every_value_has_a_reason(result["pipeline"])
    config = load_pipeline(result["pipeline"])  # validates against the schema
    assert config.task == "registration" and config.network.name == method
    assert config.network.kwargs["in_channels"] == 1
    geometry = [_ras(p) for p in _pair_images(data["pairs"])]
    assert len(geometry) == 8
    spacing = np.median([s for _, s in geometry], axis=0)
    assert list(config.preprocess.target_spacing) == pytest.approx(spacing, abs=1e-3)
    assert config.preprocess.intensity == "minmax"  # the method's preset, whatever the modality
    # the whole volume: the largest image at the target spacing, rounded up to the network's stride
    stride = create_network(method, **config.network.kwargs).size_divisor
    largest = np.max([sh * sp / spacing for sh, sp in geometry], axis=0)
    assert list(config.train.patch_size) == [math.ceil(s / stride) * stride for s in largest]
    # one pass over the training pairs: 4 pairs less the method's 10 % validation split (rounded up)
    assert config.train.iterations_per_epoch == 4 - math.ceil(4 * config.data.val_fraction) == 3
    assert config.data.labels == discover_pairs(data["pairs"]).labels
    assert config.loss.kwargs["similarity"] != "mi"  # fixed and moving are both T1 (pairs.json)
    fp = yaml.safe_load(Path(result["fingerprint"]).read_text())
    assert len(fp["cases"]) == 8 and all(c["labels"] for c in fp["cases"])


def test_intermodal_pairs_take_mutual_information(data: dict[str, Path], tmp_path: Path) -> None:
    result = plan_dataset(data["t2pairs"], tmp_path / "mi.yaml", method="micdir", target=CPU)
    assert result["config"]["loss"]["kwargs"]["similarity"] == "mi"


def test_registration_grid_shrinks_to_the_memory_budget(data: dict[str, Path], tmp_path: Path) -> None:
    whole = plan_dataset(data["pairs"], tmp_path / "whole.yaml", method="voxelmorph", target=CPU)["config"]
    kwargs = whole["network"]["kwargs"]
    stride = create_network("voxelmorph", **kwargs).size_divisor
    memory = estimate_step_memory("voxelmorph", kwargs, [stride] * 3, pair=True)
    budget = Target("cpu", memory.bytes([stride] * 3, 1) + 1, measure=False)  # room for the smallest grid only
    small = plan_dataset(data["pairs"], tmp_path / "small.yaml", method="voxelmorph", target=budget)["config"]
    patch = small["train"]["patch_size"]
    assert math.prod(patch) < math.prod(whole["train"]["patch_size"])
    assert memory.bytes(patch, 1) <= budget.memory and all(p % stride == 0 for p in patch)
    load_pipeline(tmp_path / "small.yaml")


def test_cli_plans_and_trains_a_registration_pipeline(data: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "vxm.yaml"
    assert run_medseg("plan", str(data["pairs"]), "--method", "voxelmorph", "--device", "cpu", "-o", str(out)) == 0
    assert run_medseg("train", str(out), "-o", str(tmp_path / "run"), "--epochs", "1") == 0
    assert (tmp_path / "run" / "model" / "medseg.json").is_file()


def test_hdenseunet_needs_one_channel_and_three_labels(data: dict[str, Path], tmp_path: Path) -> None:
    # the MNI pairs' images as an imagesTr-less source are not a segmentation dataset; a 4-label one is refused
    from medseg.errors import MedsegConfigError

    seg = tmp_path / "seg"
    (seg / "imagesTr").mkdir(parents=True)
    (seg / "labelsTr").mkdir()
    for i, folder in enumerate(sorted(data["pairs"].glob("pair_*"))[:2]):
        (seg / "imagesTr" / f"case_{i}_0000.nii.gz").write_bytes((folder / "fixed.nii.gz").read_bytes())
        (seg / "labelsTr" / f"case_{i}.nii.gz").write_bytes((folder / "fixed_labels.nii.gz").read_bytes())
    with pytest.raises(MedsegConfigError, match="needs labels 0 .* 1 .* 2"):
        plan_dataset(seg, tmp_path / "x.yaml", method="hdenseunet", target=CPU, modalities=["MR"])
    assert not (tmp_path / "x.yaml").exists()
