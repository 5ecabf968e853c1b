"""The ``minmax`` intensity preset: each channel of each volume to [0, 1], optionally between percentiles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from medseg.config import PreprocessConfig
from medseg.errors import MedsegConfigError
from medseg.config import validate_pipeline
from medseg.transforms.presets import IMAGE, intensity_transforms


def _apply(cfg: PreprocessConfig, image: torch.Tensor) -> torch.Tensor:
    data = {IMAGE: MetaTensor(image)}
    for t in intensity_transforms(cfg):
        data = t(data)
    return torch.as_tensor(data[IMAGE])


def test_each_channel_is_scaled_on_its_own() -> None:
    rng = np.random.default_rng(0)
    image = torch.from_numpy(np.stack([rng.uniform(100, 900, (4, 5, 6)), rng.uniform(-3, 2, (4, 5, 6))]).astype(np.float32))
    out = _apply(PreprocessConfig(intensity="minmax", minmax_percentiles=(0, 100)), image)
    for c in range(2):
        assert out[c].min().item() == pytest.approx(0.0, abs=1e-6)
        assert out[c].max().item() == pytest.approx(1.0, abs=1e-6)
        expected = (image[c] - image[c].min()) / (image[c].max() - image[c].min())
        torch.testing.assert_close(out[c], expected)


def test_percentiles_clip_hot_spots() -> None:
    image = torch.arange(1000, dtype=torch.float32).reshape(1, 10, 10, 10)
    image[0, 0, 0, 0] = 1e6
    out = _apply(PreprocessConfig(intensity="minmax", minmax_percentiles=(1.0, 99.0)), image)
    assert out.min().item() == 0.0 and out.max().item() == 1.0
    assert out[0, 5, 0, 0].item() == pytest.approx((500 - 10.99) / (989.01 - 10.99), abs=1e-3)


def test_bad_percentiles_are_config_errors() -> None:
    raw = {"name": "x", "data": {"dataset": "d"}, "network": {"name": "unet"}, "preprocess": {"intensity": "minmax", "minmax_percentiles": [99, 1]}}
    with pytest.raises(MedsegConfigError, match="preprocess.minmax_percentiles"):
        validate_pipeline(raw)
