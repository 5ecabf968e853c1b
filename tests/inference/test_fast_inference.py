"""Correctness of every inference optimisation: our stitching agrees with MONAI's sliding window, the
low-precision accumulators stay within their rounding bounds, slab-wise restore equals MONAI's
whole-volume inverse, the CUDA out-of-memory fallback works (injected failure), and the memory plan is
within 2x of the measured peak."""

from __future__ import annotations

import itertools

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from medseg.config import NetworkConfig, PreprocessConfig
from medseg.data.synthetic import ct_phantom, save_nifti
from medseg.model.package import ModelManifest, load_model_package, save_model_package
from medseg.errors import MedsegError
from medseg.inference import stitch as stitch_module
from medseg.model.heads import create_head
from medseg.inference.engine import WindowEngine
from medseg.inference.predictor import Predictor
from medseg.inference.stitch import WindowGrid, stitch, stitched_logits
from medseg.io.geometry import reorient
from medseg.networks import create_network
from medseg.networks.registry import NETWORKS, register_network

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.memory import PeakMemory  # noqa: E402

ADAPTER = create_head({"kind": "labels"}, {0: "bg", 1: "a", 2: "b"})
UNIT_ROUNDOFF = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}


@pytest.fixture(scope="module")
def net() -> nn.Module:
    """A random 3x3x3 convolution: spatial context, cheap enough for many windows."""
    torch.manual_seed(0)
    return nn.Conv3d(1, 3, 3, padding=1).eval()


@pytest.fixture(scope="module")
def unet() -> nn.Module:
    torch.manual_seed(0)
    return create_network("unet", spatial_dims=3, in_channels=1, out_channels=3, filters=[4, 8, 16]).eval()


@pytest.mark.parametrize("shape,sw_batch,network", [((40, 37, 29), 2, "net"), ((10, 50, 20), 3, "net"), ((12, 9, 14), 1, "net"), ((24, 20, 12), 2, "unet")])
def test_stitching_matches_monai(request: pytest.FixtureRequest, shape: tuple[int, ...], sw_batch: int, network: str) -> None:
    """Same windows, weights and order as MONAI: logits within 1e-5 (fp32) and the same argmax, including
    images smaller than the window (padded) and batches that do not divide the window count."""
    net = request.getfixturevalue(network)
    x = torch.randn(2, 1, *shape)
    with torch.no_grad():
        ref = sliding_window_inference(x, (16, 16, 16), sw_batch, net, overlap=0.5, mode="gaussian")
        ours = stitched_logits(stitch(net, x, (16, 16, 16), 0.5, sw_batch))
    assert ours.shape == ref.shape
    assert float((ours - ref).abs().max()) <= 1e-5
    assert torch.equal(ours.argmax(1), ref.argmax(1))


def _coverage(grid: WindowGrid) -> int:
    count = np.zeros(grid.padded, dtype=np.int64)
    for i in range(grid.windows):
        count[grid.window(i)] += 1
    return int(count.max())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_accumulator_within_rounding_bound(net: nn.Module, dtype: torch.dtype) -> None:
    """An accumulator in fp16/bf16 (the GPU default is fp16) differs from fp32 by at most the rounding of
    W additions (W = windows covering a voxel): |err| <= 2 W u max|logit|; argmax agrees wherever the
    fp32 margin between the top two classes exceeds twice that bound."""
    x = torch.randn(1, 1, 40, 30, 24)
    with torch.no_grad():
        ref = stitched_logits(stitch(net, x, (16, 16, 16), 0.5, 2))
        low = stitched_logits(stitch(net, x, (16, 16, 16), 0.5, 2, accumulate=dtype))
    bound = 2 * _coverage(WindowGrid.build(x.shape[2:], (16, 16, 16), 0.5)) * UNIT_ROUNDOFF[dtype] * float(ref.abs().max())
    err = float((low - ref).abs().max())
    assert 0 < err <= bound
    top2 = ref.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 2 * bound
    assert torch.equal(low.argmax(1)[clear], ref.argmax(1)[clear])


def _monai_probabilities(net: nn.Module, x: torch.Tensor, tta: bool) -> torch.Tensor:
    """MONAI's sliding_window_inference (Gaussian), softmax, averaged over all flips of the spatial axes."""
    flips = [c for n in range(4) for c in itertools.combinations((2, 3, 4), n)] if tta else [()]
    total = torch.zeros(0)
    for axes in flips:
        xf = torch.flip(x, axes) if axes else x
        with torch.no_grad():
            logits = sliding_window_inference(xf, (12, 12, 12), 4, net, overlap=0.5, mode="gaussian")
        probs = torch.softmax(torch.as_tensor(logits).float(), 1)
        probs = torch.flip(probs, axes) if axes else probs
        total = probs if total.numel() == 0 else total + probs
    return total / len(flips)


def test_engine_tta_and_labels_match_the_monai_path(net: nn.Module) -> None:
    """Mirroring TTA through our engine equals MONAI's sliding_window_inference over the same flips; the labels
    path (argmax slab by slab, uint8) equals the argmax of those probabilities."""
    x = torch.randn(1, 1, 20, 18, 14)
    for tta in (False, True):
        engine = WindowEngine(net, ADAPTER, torch.device("cpu"), (12, 12, 12), 0.5, 4, tta)
        engine.slab_voxels = 18 * 14 * 3  # several slabs, the last one partial
        ref = _monai_probabilities(net, x, tta)
        probs = engine.probabilities(x)
        assert float((probs - ref).abs().max()) <= 1e-5
        labels = engine.labels(x)
        assert labels.dtype == torch.uint8
        assert torch.equal(labels.long(), ref.argmax(1))


# ---------------------------------------------------------------- predictor: restore, fallback, plan
class Blobs(nn.Module):
    """A fixed 3-class per-voxel classifier with smooth logits (resampling moves the boundaries)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 3, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([-0.02, 0.0, 0.02]).view(3, 1, 1, 1, 1))
            self.conv.bias.copy_(torch.tensor([0.0, 0.4, -1.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@pytest.fixture
def blob_model(tmp_path: Path):
    register_network("test_blobs")(Blobs)

    def make(target_spacing: tuple[float, float, float] | None, patch: tuple[int, int, int] = (16, 16, 16), overlap: float = 0.5) -> Predictor:
        manifest = ModelManifest(
            name="blobs", network=NetworkConfig(name="test_blobs"), labels={0: "background", 1: "organ", 2: "lesion"},
            modalities=["CT"], preprocess=PreprocessConfig(intensity="none", target_spacing=target_spacing), patch_size=patch,
        )
        path = save_model_package(tmp_path / f"blobs_{target_spacing}_{patch}", Blobs(), manifest, force=True)
        return Predictor(load_model_package(path), torch.device("cpu"), overlap=overlap)

    yield make
    NETWORKS.remove("test_blobs")


def _case(tmp_path: Path, name: str, code: str, oblique: bool = False) -> Path:
    image, _, affine = ct_phantom(4)
    array, aff = reorient(image, affine, code)
    if oblique:
        a = np.deg2rad(20)
        rot = np.eye(4)
        rot[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
        aff = rot @ aff
    return save_nifti(tmp_path / f"{name}.nii.gz", array, aff)


@pytest.mark.parametrize("code,oblique", [("PSR", False), ("LPS", True)])
def test_slab_restore_equals_the_whole_volume_inverse(tmp_path: Path, blob_model, code: str, oblique: bool) -> None:
    """Slab-wise resampling + argmax (no float map at input resolution) gives MONAI's whole-volume inverse
    (probabilities resampled, then argmax); so does argmax on the grid + reorienting without resampling."""
    for spacing in ((2.5, 3.0, 4.0), None):
        predictor = blob_model(spacing, (24, 24, 24))
        predictor.engine.slab_voxels = 2000  # many slabs
        src = _case(tmp_path, f"{code}{oblique}", code, oblique)
        fast = predictor.predict_files([src])
        full = predictor.predict_files([src], keep_probabilities=True)  # the MONAI whole-volume path
        assert fast.labels.dtype == np.uint8 and fast.labels.shape == full.labels.shape
        assert set(np.unique(full.labels)) == {0, 1, 2}
        np.testing.assert_array_equal(fast.labels, full.labels)


def test_out_of_memory_falls_back_to_host_stitching(tmp_path: Path, blob_model, monkeypatch: pytest.MonkeyPatch) -> None:
    """An out-of-memory error while allocating the stitching buffer (injected) makes the case stitch on the
    host: same result, the plan says so; a second failure there is a one-line MedsegError."""
    predictor = blob_model((3.0, 3.0, 3.0))
    src = _case(tmp_path, "oom", "RAS")
    reference = predictor.predict_files([src]).labels
    real = stitch_module.new_accumulator
    calls = {"n": 0}

    def flaky(shape, dtype, device):
        calls["n"] += 1
        if calls["n"] == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
        return real(shape, dtype, device)

    monkeypatch.setattr(stitch_module, "new_accumulator", flaky)
    result = predictor.predict_files([src])
    np.testing.assert_array_equal(result.labels, reference)
    assert predictor.last_plan is not None and "stitched on the host" in (predictor.last_plan.fallback or "")
    assert calls["n"] == 2

    def always(shape, dtype, device):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(stitch_module, "new_accumulator", always)
    with pytest.raises(MedsegError, match="even when stitching on the host"):
        predictor.predict_files([src])


@pytest.mark.parametrize("spacing", [None, (2.5, 2.5, 2.5)])
def test_plan_estimate_within_2x_of_measured_peak(tmp_path: Path, blob_model, spacing) -> None:
    """CPU: the plan's host estimate is within 2x of the peak RSS growth of predict_image."""
    predictor = blob_model(spacing, (64, 64, 64), overlap=0.25)
    predictor.engine.slab_voxels = 1 << 18
    rng = np.random.default_rng(0)
    image = rng.normal(0, 40, (144, 128, 96)).astype(np.float32)
    src = save_nifti(tmp_path / "big.nii.gz", image, np.diag([2.0, 2.0, 2.0, 1.0]))  # 7 MB as float32
    loaded, geometry = predictor.load([src])
    # one intra-op thread: with more, glibc gives each torch worker thread its own malloc arena and the RSS
    # growth counts arena slack (measured 90 MB at 2 threads vs 29 MB at 1 for the same buffers), not buffers
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        predictor.predict_image(loaded, geometry)  # warm-up: allocator pools, lazy imports
        with PeakMemory() as mem:
            predictor.predict_image(loaded, geometry)
    finally:
        torch.set_num_threads(threads)
    plan = predictor.last_plan
    assert plan is not None and plan.stitch_on == "host" and plan.accumulate == "float32"
    ratio = plan.host_peak / mem.host
    assert 0.5 <= ratio <= 2.0, (plan.format(), mem.host)
    assert predictor.plan_files([src]).host_peak == plan.host_peak  # from the header alone


def test_cli_plan_prints_and_torchrun_shards_folder_cases(tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """``medseg predict --plan`` prints one plan per case and writes nothing; under torchrun's environment
    (RANK/WORLD_SIZE) a folder's cases are split across the ranks."""
    from medseg.cli.main import main

    cases = tmp_path / "cases"
    cases.mkdir()
    for i in range(3):
        image, _, affine = ct_phantom(10 + i)
        save_nifti(cases / f"case{i}.nii.gz", image, affine)
    out = tmp_path / "out"
    main(["predict", "-i", str(cases), "-o", str(out), "-m", str(tiny_model), "--device", "cpu", "--plan", "-q"])
    printed = capsys.readouterr().out
    assert printed.count("host peak") == 3 and "network grid" in printed and "stitch on host" in printed
    assert not list(out.iterdir())
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    main(["predict", "-i", str(cases), "-o", str(out), "-m", str(tiny_model), "--device", "cpu", "--plan", "-q"])
    printed = capsys.readouterr().out
    assert printed.count("host peak") == 1 and printed.startswith("case1:")
