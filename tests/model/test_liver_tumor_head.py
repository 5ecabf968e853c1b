"""H-DenseUNet's post-processing head (output.kind: liver_tumor)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.errors import MedsegConfigError
from medseg.model.heads import create_head

LABELS = {0: "background", 1: "liver", 2: "tumour"}


def _probs(shape: tuple[int, int, int]) -> np.ndarray:
    p = np.zeros((3, *shape), np.float32)
    p[0] = 1.0
    return p


def _set(p: np.ndarray, where: tuple[slice, ...], values: tuple[float, float, float]) -> None:
    for c, v in enumerate(values):
        p[(c, *where)] = v


def test_code_post_processing() -> None:
    p = _probs((20, 20, 10))
    _set(p, np.s_[2:12, 2:12, 2:8], (0.1, 0.8, 0.1))  # the liver
    _set(p, np.s_[6, 6, 4], (0.6, 0.3, 0.1))  # a hole in it
    _set(p, np.s_[4:7, 4:7, 3:6], (0.02, 0.03, 0.95))  # a confident tumour inside
    _set(p, np.s_[9:11, 9:11, 3:5], (0.1, 0.1, 0.8))  # an unsure one: p(tumour) < 0.9 -> liver? no: p(liver) < 0.5 -> background
    _set(p, np.s_[15:18, 15:18, 2:4], (0.05, 0.9, 0.05))  # a smaller liver-like island
    _set(p, np.s_[16, 2, 5], (0.0, 0.0, 1.0))  # tumour outside the liver
    head = create_head({"kind": "liver_tumor"}, LABELS)
    labels = head.to_labels(torch.from_numpy(p)[None])[0].numpy()
    assert labels[16, 16, 3] == 0  # island dropped (largest component kept)
    assert labels[16, 2, 5] == 0  # tumour outside the liver dropped
    assert labels[5, 5, 4] == 2 and (labels == 2).sum() == 27
    assert labels[6, 6, 4] == 2  # inside the tumour box anyway; the liver hole test below
    hole = _probs((12, 12, 12))
    _set(hole, np.s_[2:10, 2:10, 2:10], (0.1, 0.8, 0.1))
    _set(hole, np.s_[5, 5, 5], (0.9, 0.05, 0.05))
    filled = head.to_labels(torch.from_numpy(hole)[None])[0].numpy()
    assert filled[5, 5, 5] == 1  # enclosed hole filled
    assert labels[9, 9, 3] == 0 or labels[9, 9, 3] == 1  # unsure voxels: never tumour at threshold 0.9
    assert labels[9, 9, 3] != 2


def test_thresholds_and_argmax_mode() -> None:
    p = _probs((6, 6, 6))
    _set(p, np.s_[1:5, 1:5, 1:5], (0.3, 0.35, 0.35))  # argmax liver/tumour tie region; p(liver) < 0.5
    t = torch.from_numpy(p)[None]
    code = create_head({"kind": "liver_tumor"}, LABELS).to_labels(t)[0]
    assert int(code.max()) == 0  # code: liver needs p(liver) >= 0.5 alone
    fg = create_head({"kind": "liver_tumor", "liver_probability": "foreground"}, LABELS).to_labels(t)[0]
    assert (fg[1:5, 1:5, 1:5] == 1).all()  # 1 - p(background) = 0.7
    low = create_head({"kind": "liver_tumor", "liver_probability": "foreground", "tumour_threshold": 0.3}, LABELS)
    assert (low.to_labels(t)[0][1:5, 1:5, 1:5] == 2).all()
    argmax = create_head({"kind": "liver_tumor", "thresholds": False}, LABELS).to_labels(t)[0]
    assert set(torch.unique(argmax).tolist()) <= {0, 1, 2} and (argmax[1:5, 1:5, 1:5] > 0).all()


def test_bad_options_are_rejected() -> None:
    with pytest.raises(MedsegConfigError, match="tumour_label"):
        create_head({"kind": "liver_tumor", "tumour_label": 3}, LABELS)
    with pytest.raises(MedsegConfigError, match="liver_probability"):
        create_head({"kind": "liver_tumor", "liver_probability": "max"}, LABELS)
    with pytest.raises(MedsegConfigError, match="tumour_threshold"):
        create_head({"kind": "liver_tumor", "tumour_threshold": 0}, LABELS)
