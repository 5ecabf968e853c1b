"""``medseg predict --plan`` against the measured peak (issue 13 item 13): within 1.5x on the demo case and on the
MNI152 T1 (nilearn's template), both as the case's RSS growth and as the process peak the report prints."""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import pytest
import torch
import yaml

from medseg.config import NetworkConfig, PreprocessConfig, bundled_pipeline
from medseg.data.synthetic import ct_phantom, save_nifti
from medseg.inference.plan import _proc_status
from medseg.inference.predictor import Predictor
from medseg.model.package import ModelManifest, load_model_package, save_model_package
from medseg.networks import create_network

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.memory import PeakMemory  # noqa: E402


@pytest.fixture(scope="module")
def demo_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo pipeline's network and preprocessing (untrained weights: memory does not depend on them)."""
    cfg = yaml.safe_load(bundled_pipeline("demo").read_text())
    torch.manual_seed(0)
    manifest = ModelManifest(
        name="demo", network=NetworkConfig(**cfg["network"]), labels=cfg["data"]["labels"], modalities=cfg["data"]["modalities"],
        preprocess=PreprocessConfig(**cfg["preprocess"]), patch_size=tuple(cfg["train"]["patch_size"]),
    )
    root = tmp_path_factory.mktemp("demo_model")
    return save_model_package(root / "model", create_network(cfg["network"]["name"], **cfg["network"]["kwargs"]), manifest)


def _demo_case(folder: Path) -> Path:
    image, _, affine = ct_phantom(0)
    return save_nifti(folder / "demo.nii.gz", image, affine)


def _mni152(folder: Path) -> Path:
    from nilearn.datasets import load_mni152_template  # shipped with nilearn, no download

    path = folder / "mni152_t1_1mm.nii.gz"
    nib.save(load_mni152_template(resolution=1), str(path))
    return path


@pytest.mark.parametrize("make_case", [_demo_case, _mni152], ids=["demo", "mni152"])
def test_plan_within_1_5x_of_the_measured_peak(tmp_path: Path, demo_package: Path, make_case) -> None:
    src = make_case(tmp_path)
    threads = torch.get_num_threads()
    # one intra-op thread: with more, glibc gives each worker thread its own malloc arena and the RSS growth
    # counts arena slack, not buffers
    torch.set_num_threads(1)
    try:
        predictor = Predictor(load_model_package(demo_package), torch.device("cpu"))
        plan = predictor.plan_files([src])  # from the header alone, what --plan prints
        predictor.predict_files([src])  # warm-up: allocator pools, lazy imports
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # the report's per-case high-water mark
        with PeakMemory() as mem:
            predictor.predict_files([src])
        process_peak = _proc_status("VmHWM")
    finally:
        torch.set_num_threads(threads)
    assert predictor.last_plan is not None and predictor.last_plan.host_peak == plan.host_peak
    ratio = plan.host_peak / mem.host
    assert 1 / 1.5 <= ratio <= 1.5, (plan.format(), mem.host / 2**20)
    assert 1 / 1.5 <= plan.process_peak / process_peak <= 1.5, (plan.format(), process_peak / 2**20)
    assert "process peak" in plan.format()
