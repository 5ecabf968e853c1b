"""``medseg plan`` on three different phantom datasets, checked against the planning rules written here."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from medseg.config import load_pipeline
from medseg.data.layouts import discover_cases
from medseg.data.registry import generate_phantom
from medseg.data.synthetic import CTPhantomSpec, make_ct_dataset
from medseg.io.image_io import read_image
from medseg.planning.memory import estimate_step_memory, topology
from medseg.planning.plan import plan_dataset, resolve_target
from medseg.planning.planner import GiB, Target
from tests.conftest import run_cli

GPU24 = Target("cuda", 24 * GiB, measure=False)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("plan")
    iso = CTPhantomSpec(spacing_xy_mm=(1.0, 1.0), spacing_z_mm=(1.0, 1.0), field_of_view_mm=(80.0, 80.0, 64.0))
    aniso = CTPhantomSpec(spacing_xy_mm=(0.7, 0.7), spacing_z_mm=(5.0, 5.0))
    make_ct_dataset(root / "iso", 4, 0, 1, spec=iso)
    make_ct_dataset(root / "aniso", 4, 0, 2, spec=aniso)  # cases stored RAS, LPS, ... (mixed orientations)
    generate_phantom("glioma_phantom", root / "mr", 4, 0, 3, spacing_mm=(3.0, 3.0, 3.0))
    return {"iso": root / "iso", "aniso": root / "aniso", "mr": root / "mr"}


def _plan(dataset: Path, out: Path, target: Target = GPU24) -> dict:
    return plan_dataset(dataset, out, target=target)


def _foreground(dataset: Path) -> np.ndarray:
    values = []
    for case in discover_cases(dataset):
        image, _ = read_image(case["image"][0])
        label, _ = read_image(case["label"], "label")
        values.append(image[label > 0])
    return np.concatenate(values)


def _check_common(result: dict, dataset: Path, n_cases: int) -> dict:
    config = load_pipeline(result["pipeline"])  # validates against the schema
    raw = result["config"]
    kw = raw["network"]["kwargs"]
    # every planned value has its reason
    for line in Path(result["pipeline"]).read_text().splitlines():
        if line.strip() and not line.startswith("#") and not line.rstrip().endswith(":"):
            assert "  # " in line, f"value without a reason: {line}"
    # the patch is divisible by the network's downsampling along every axis
    divisor = [math.prod((s if isinstance(s, int) else s[a]) for s in kw["strides"]) for a in range(3)]
    assert all(p % d == 0 for p, d in zip(raw["train"]["patch_size"], divisor))
    assert raw["train"]["batch_size"] >= 2
    fp = json.loads(Path(result["fingerprint"]).read_text())
    assert len(fp["cases"]) == n_cases
    assert abs(sum(fp["class_frequency"].values()) - 1) < 1e-6
    for case in fp["cases"]:
        assert {"shape", "spacing", "orientation", "intensity", "labels"} <= set(case)
        assert all(case["labels"][k]["components"] >= (1 if case["labels"][k]["voxels"] else 0) for k in case["labels"] if k != "0")
    assert config.data.dataset is not None and (Path(result["pipeline"]).parent / config.data.dataset).resolve() == dataset.resolve()
    return raw


def test_isotropic_ct(datasets: dict[str, Path], tmp_path: Path) -> None:
    result = _plan(datasets["iso"], tmp_path / "iso.yaml")
    raw = _check_common(result, datasets["iso"], 4)
    pre = raw["preprocess"]
    assert pre["target_spacing"] == pytest.approx([1.0, 1.0, 1.0], abs=1e-3)  # the median
    assert pre["intensity"] == "ct"
    fg = _foreground(datasets["iso"]).astype(float)
    lo, hi = (float(v) for v in np.percentile(fg, [0.5, 99.5]))  # the planner samples; the rule is on all foreground voxels
    assert pre["ct_window"] == pytest.approx([lo, hi], abs=0.05 * (hi - lo))
    assert pre["ct_offset"] == pytest.approx(float(fg.mean()), abs=0.05 * float(fg.std()))
    assert pre["ct_scale"] == pytest.approx(float(fg.std()), rel=0.1)
    # a 24 GB GPU takes the whole median case (80 x 80 x 64 voxels) in one patch
    assert raw["train"]["patch_size"] == [80, 80, 64]
    assert raw["network"]["kwargs"]["in_channels"] == 1 and raw["network"]["kwargs"]["out_channels"] == 3


def test_smaller_memory_gives_a_smaller_patch_that_fits(datasets: dict[str, Path], tmp_path: Path) -> None:
    budget = Target("cuda", int(0.4 * GiB), measure=False)
    raw = _check_common(_plan(datasets["iso"], tmp_path / "small.yaml", budget), datasets["iso"], 4)
    patch = raw["train"]["patch_size"]
    assert math.prod(patch) < 80 * 80 * 64
    kw = raw["network"]["kwargs"]
    memory = estimate_step_memory("unet", kw, topology(patch, raw["preprocess"]["target_spacing"]).divisor)
    assert memory.bytes(patch, 2) <= budget.memory


def test_anisotropic_ct(datasets: dict[str, Path], tmp_path: Path) -> None:
    raw = _check_common(_plan(datasets["aniso"], tmp_path / "aniso.yaml"), datasets["aniso"], 4)
    spacing = raw["preprocess"]["target_spacing"]
    # the thick axis (S in RAS, whatever the stored orientation) keeps its 10th-percentile spacing, in-plane the median
    assert spacing == pytest.approx([0.7, 0.7, 5.0], abs=1e-3)
    kw = raw["network"]["kwargs"]
    strides = [s if isinstance(s, list) else [s] * 3 for s in kw["strides"]]
    kernels = [k if isinstance(k, list) else [k] * 3 for k in kw["kernel_size"]]
    assert strides[1][2] == 1 and strides[1][:2] == [2, 2]  # thick slices are not pooled first
    assert kernels[0][2] == 1 and kernels[0][:2] == [3, 3]  # in-plane convolutions at full resolution
    patch = raw["train"]["patch_size"]
    assert patch[0] > 4 * patch[2]  # far more voxels in-plane than across slices


def test_four_modality_mr(datasets: dict[str, Path], tmp_path: Path) -> None:
    raw = _check_common(_plan(datasets["mr"], tmp_path / "mr.yaml"), datasets["mr"], 4)
    assert raw["preprocess"]["intensity"] == "mri" and "ct_window" not in raw["preprocess"]
    assert raw["preprocess"]["target_spacing"] == pytest.approx([3.0, 3.0, 3.0], abs=1e-3)
    declared = json.loads((datasets["mr"] / "dataset.json").read_text())["modality"]
    assert raw["data"]["modalities"] == [declared[str(i)] for i in range(4)]
    assert raw["network"]["kwargs"]["in_channels"] == 4
    assert raw["network"]["kwargs"]["out_channels"] == len(raw["data"]["labels"]) == 4


def test_cpu_target_plans_a_small_network(datasets: dict[str, Path], tmp_path: Path) -> None:
    raw = _check_common(_plan(datasets["iso"], tmp_path / "cpu.yaml", resolve_target(None, "cpu")), datasets["iso"], 4)
    assert max(raw["network"]["kwargs"]["filters"]) <= 64 and raw["train"]["amp"] is False
    # a CPU budget is hundreds of steps: Adam, not nnU-Net's SGD with momentum 0.99 (tuned for 250k iterations)
    assert raw["train"]["optimizer"] == "adam" and "momentum" not in raw["train"]


def test_gpu_target_keeps_nnunet_sgd(datasets: dict[str, Path], tmp_path: Path) -> None:
    raw = _check_common(_plan(datasets["iso"], tmp_path / "gpu.yaml"), datasets["iso"], 4)
    train = raw["train"]
    assert (train["optimizer"], train["lr"], train["momentum"], train["epochs"]) == ("sgd", 0.01, 0.99, 1000)


def test_cli_plan_and_check(datasets: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "p.yaml"
    result = run_cli("plan", str(datasets["mr"]), "--device", "cpu", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(out.read_text())["network"]["kwargs"]["in_channels"] == 4
    assert (tmp_path / "fingerprint.json").is_file()
    ok = run_cli("plan", str(datasets["iso"]), "--check", "--folds", "5")
    assert ok.returncode == 0, ok.stderr
    assert "4 labelled case(s) cannot make 5 folds" in ok.stdout
    # a label map whose geometry does not match its image stops training: reported, exit 1
    broken = tmp_path / "broken"
    make_ct_dataset(broken, 3, 0, 5, spec=CTPhantomSpec(field_of_view_mm=(60.0, 60.0, 40.0)))
    case = discover_cases(broken)[0]
    other = discover_cases(broken)[1]
    Path(case["label"]).write_bytes(Path(other["label"]).read_bytes())
    bad = run_cli("plan", str(broken), "--check")
    assert bad.returncode == 1
    assert Path(case["label"]).name in bad.stdout
