"""H-DenseUNet's test-time chunks (``inference.window: chunks``) through the one window engine.

The reference is the authors' ``lib/funcs.py: predict_tumor_inwindow`` written out literally (chunks of the
training depth every ``depth // 4`` slices, the last flush with the end, ``[1:-1]`` of each chunk's softmax
summed and divided by the count). Tolerance 1e-5 on probabilities: both sides run the same float32 forward
passes on the same chunks; what differs is the summation order of at most ``depth / stride`` terms and the
in-plane Gaussian weight multiplied in and divided out again (a few float32 roundings of values <= 1),
while the Gaussian scheme differs from it by more than 1e-3 (asserted).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.config import InferenceConfig, NetworkConfig, PreprocessConfig
from medseg.errors import MedsegConfigError
from medseg.inference.engine import WindowEngine, window_chunks
from medseg.inference.plan import CaseShapes, make_plan
from medseg.inference.predictor import Predictor
from medseg.inference.stitch import Chunks, WindowGrid
from medseg.model.heads import create_head
from medseg.model.package import ModelManifest, load_model_package, save_model_package
from medseg.networks import create_network

TINY = {"init_features": 8, "growth_rate": 4, "block_config": (1, 1, 1, 1), "bn_size": 2, "decoder_widths": (16, 8, 8, 8, 8)}
KWARGS = {"in_channels": 1, "out_channels": 3, "hff_channels": 6, "net2d": TINY, "net3d": TINY}
LABELS = {0: "background", 1: "liver", 2: "tumour"}
ROI = (32, 32, 8)
TOL = 1e-5


@pytest.fixture(scope="module")
def hybrid() -> torch.nn.Module:
    torch.manual_seed(0)
    net = create_network("hdenseunet", **KWARGS)
    for m in net.modules():  # non-trivial running statistics, so that eval mode is not the identity
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _volume(depth: int, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn((1, 1, ROI[0], ROI[1], depth), generator=gen)


@torch.no_grad()
def code_predict(net: torch.nn.Module, volume: torch.Tensor, depth: int = 8) -> np.ndarray:
    """The authors' ``predict_tumor_inwindow`` on a volume whose slices are one window in-plane: ``(P, I, J, K)``."""
    z = volume.shape[-1]
    stride = depth // 4
    score = np.zeros((3, *volume.shape[2:]), dtype=np.float64)
    count = np.zeros(volume.shape[2:], dtype=np.int64)
    right = z - depth  # the liver box spans the volume here: left_cols = 0, right_cols = z - depth
    for cols in range(0, right + stride, stride):
        cols = min(cols, z - depth)  # "if cols > z - img_cols": the last chunk flush with the end
        p = torch.softmax(net(volume[..., cols : cols + depth]), 1)[0].numpy()
        score[..., cols + 1 : cols + depth - 1] += p[..., 1:-1]
        count[..., cols + 1 : cols + depth - 1] += 1
    return score / np.maximum(count, 1)  # the code's score / (score_num + 1e-4): 0 where unscored


def _engine(net: torch.nn.Module, chunks: Chunks | None, roi: tuple[int, ...] = ROI) -> WindowEngine:
    return WindowEngine(net, create_head({"kind": "labels"}, LABELS), torch.device("cpu"), roi, 0.5, 2, False, chunks=chunks)


def test_one_chunk_deep_volume_equals_the_training_chunk(hybrid: torch.nn.Module) -> None:
    """A volume exactly one chunk deep: interior slices are the network's softmax on that chunk; ends background."""
    x = _volume(8)
    probs = _engine(hybrid, Chunks(stride=2)).probabilities(x)
    with torch.no_grad():
        chunk = torch.softmax(hybrid(x), 1)
    assert float((probs[..., 1:-1] - chunk[..., 1:-1]).abs().max()) <= TOL
    assert torch.equal(probs[:, 0, ..., [0, -1]], torch.ones_like(probs[:, 0, ..., [0, -1]]))


@pytest.mark.parametrize("depth", [20, 19])
def test_whole_volume_equals_the_code_and_training_chunks(hybrid: torch.nn.Module, depth: int) -> None:
    """Stride 2 (overlapping chunks, averaged) equals the code's loop; stride 6 (interior slices tile the volume)
    equals, slice for slice, the training-style chunk that scores it."""
    x = _volume(depth)
    ours = _engine(hybrid, Chunks(stride=2)).probabilities(x)[0].numpy()
    ref = code_predict(hybrid, x)
    assert np.abs(ours[..., 1:-1] - ref[..., 1:-1]).max() <= TOL
    assert np.abs(ours[1:, ..., [0, -1]]).max() <= TOL  # the code's unscored end slices: liver and tumour 0
    gaussian = _engine(hybrid, None).probabilities(x)[0].numpy()
    assert np.abs(gaussian[..., 1:-1] - ref[..., 1:-1]).max() > 1e-3  # the option changes what it says

    tiled = _engine(hybrid, Chunks(stride=6)).probabilities(x)
    starts = [int(s[-1]) for s in WindowGrid.build(x.shape[2:], ROI, 0.5, Chunks(stride=6)).starts]
    assert starts[-1] == depth - 8 and len(set(starts)) == len(starts)
    scored = torch.zeros(depth, dtype=torch.int64)
    for s in starts:
        scored[s + 1 : s + 7] += 1
    assert scored[1:-1].min() >= 1 and int((scored == 1).sum()) >= depth - 4  # at most the flush chunk's overlap twice
    with torch.no_grad():
        for s in starts:
            once = [k for k in range(s + 1, s + 7) if scored[k] == 1]  # slices this chunk alone scores
            chunk = torch.softmax(hybrid(x[..., s : s + 8]), 1)
            assert float((tiled[..., once] - chunk[..., [k - s for k in once]]).abs().max()) <= TOL


def test_window_option_resolution(hybrid: torch.nn.Module) -> None:
    head = create_head({"kind": "liver_tumor"}, LABELS)
    assert window_chunks(InferenceConfig(), hybrid, head, (64, 64, 8)) == Chunks(stride=2, edge=1)  # auto: the code's
    assert window_chunks(InferenceConfig(), hybrid, head, (64, 64, 12)) == Chunks(stride=3, edge=1)
    assert window_chunks(InferenceConfig(window="gaussian"), hybrid, head, (64, 64, 8)) is None
    unet = create_network("unet", spatial_dims=3, in_channels=1, out_channels=3, filters=[4, 8, 16])
    assert window_chunks(InferenceConfig(), unet, head, (16, 16, 16)) is None  # other networks: unchanged
    assert window_chunks(InferenceConfig(window="chunks", chunk_stride=3, chunk_edge=0), unet, head, (16, 16, 16)) == Chunks(3, 0)
    with pytest.raises(MedsegConfigError, match="chunk_stride"):
        window_chunks(InferenceConfig(chunk_stride=7), hybrid, head, (64, 64, 8))  # 6 interior slices: gaps
    regions = create_head({"kind": "regions"}, {0: "background", 1: "necrosis", 2: "edema", 4: "enhancing"})
    with pytest.raises(MedsegConfigError, match="softmax"):
        window_chunks(InferenceConfig(window="chunks"), unet, regions, (16, 16, 16))


def test_package_default_uses_the_code_chunks(tmp_path: Path, hybrid: torch.nn.Module) -> None:
    """A hybrid package without an ``inference.window`` predicts the code's way; the plan counts its windows."""
    def predictor(**inference: object) -> Predictor:
        manifest = ModelManifest(
            name="hd", network=NetworkConfig(name="hdenseunet", kwargs=KWARGS), labels=LABELS, modalities=["CT"],
            preprocess=PreprocessConfig(intensity="none"), patch_size=ROI, inference=InferenceConfig(**inference),  # type: ignore[arg-type]
        )
        path = save_model_package(tmp_path / f"hd{len(inference)}", hybrid, manifest, force=True)
        return Predictor(load_model_package(path), torch.device("cpu"))

    x = _volume(19, seed=2)
    default = predictor()
    assert default.engine.chunks == Chunks(2, 1)
    ours = default.engine.probabilities(x)[0].numpy()
    assert np.abs(ours[..., 1:-1] - code_predict(hybrid, x)[..., 1:-1]).max() <= TOL
    assert default.plan(CaseShapes((32, 32, 19), (32, 32, 19), 1, False)).windows == 7  # z starts 0, 2, ..., 10, 11
    gaussian = predictor(window="gaussian")
    assert gaussian.engine.chunks is None
    assert make_plan(CaseShapes((32, 32, 19), (32, 32, 19), 1, False), gaussian.profile(), torch.device("cpu")).windows == 4  # 0, 4, 8, 11
