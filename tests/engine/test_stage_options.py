"""Per-stage training options: ``train.freeze``, ``train.skip_incomplete_batches``, ``augment.flip_axes``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from medseg.config import load_pipeline
from medseg.config.sections import AugmentConfig
from medseg.engine.trainer import Trainer
from medseg.errors import MedsegConfigError
from medseg.networks.freeze import freeze_submodules
from medseg.networks.registry import get_network_spec
from medseg.transforms.presets import training_sampling
from tests.conftest import write_pipeline

HYBRID = {
    "network.name": "hdenseunet", "network.kwargs": get_network_spec("hdenseunet").tiny_kwargs(3),
    "loss.name": "hdenseunet", "train.patch_size": [32, 32, 8], "train.batch_size": 1, "train.samples_per_volume": 1,
    "train.epochs": 1, "train.iterations_per_epoch": 3, "data.val_fraction": 0.0, "data.synthetic.n_train": 2,
}


class Recording(Trainer):
    """Keeps the network's state at construction and the label of every trained batch."""

    def build_networks(self) -> dict[str, torch.nn.Module]:
        nets = super().build_networks()
        self.initial = {k: v.detach().clone() for k, v in nets["model"].state_dict().items()}
        self.labels: list[torch.Tensor] = []
        return nets

    def optimisation_step(self, batch: dict[str, Any]) -> dict[str, float]:
        self.labels.append(torch.as_tensor(batch["label"]).clone())
        return super().optimisation_step(batch)


def test_freeze_keeps_the_named_submodule_fixed(tmp_path: Path) -> None:
    """``train.freeze: [net2d]`` (H-DenseUNet's stage 2): no 2D parameter or BN statistic changes, the 3D part learns."""
    config = load_pipeline(write_pipeline(tmp_path / "p.yaml", **HYBRID, **{"train.freeze": ["net2d"]}))
    trainer = Recording(config, tmp_path / "run", device="cpu", progress=False)
    trainer.fit()
    final = trainer.networks["model"].state_dict()
    net2d = [k for k in final if k.startswith("net2d.")]
    assert net2d and [k for k in net2d if not torch.equal(final[k], trainer.initial[k])] == []
    assert any(not torch.equal(final[k], trainer.initial[k]) for k in final if k.startswith("net3d.") and k.endswith("weight"))
    assert all(p.requires_grad is False for p in trainer.networks["model"].net2d.parameters())
    optimised = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert not optimised & {id(p) for p in trainer.networks["model"].net2d.parameters()}
    unfrozen = Recording(load_pipeline(write_pipeline(tmp_path / "q.yaml", **HYBRID)), tmp_path / "run2", device="cpu", progress=False)
    unfrozen.fit()
    after = unfrozen.networks["model"].state_dict()
    assert any(not torch.equal(after[k], unfrozen.initial[k]) for k in net2d)  # without the option the 2D part learns


def test_frozen_submodule_stays_in_eval_mode() -> None:
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 1), torch.nn.BatchNorm3d(2), torch.nn.Dropout(0.5))
    freeze_submodules(net, ["1", "2"])
    net.train()
    before = net[1].running_mean.clone()
    out = net(torch.randn(2, 1, 4, 4, 4))
    assert not net[1].training and not net[2].training and net[0].training
    assert torch.equal(net[1].running_mean, before) and out.requires_grad
    with pytest.raises(MedsegConfigError, match="did you mean"):
        freeze_submodules(torch.nn.ModuleDict({"net2d": torch.nn.Linear(1, 1)}), ["net_2d"])


@pytest.mark.parametrize("skip", [True, False])
def test_skip_incomplete_batches(tmp_path: Path, skip: bool) -> None:
    """The code's hybrid trains only on batches whose label holds background, liver and tumour."""
    overrides = {"train.epochs": 1, "train.iterations_per_epoch": 6, "train.batch_size": 1, "train.samples_per_volume": 1,
                 "data.val_fraction": 0.0, "train.pos_fraction": 0.5, "train.skip_incomplete_batches": skip}
    trainer = Recording(load_pipeline(write_pipeline(tmp_path / "p.yaml", **overrides)), tmp_path / "run", device="cpu", progress=False)
    trainer.fit()
    assert len(trainer.labels) == 6  # skipped batches do not count as steps
    complete = [set(torch.unique(lab).long().tolist()) == {0, 1, 2} for lab in trainer.labels]
    assert all(complete) if skip else not all(complete)


@pytest.mark.parametrize(("flip_axes", "z_flipped"), [([0, 1], False), (None, True)])
def test_flip_axes(flip_axes: list[int] | None, z_flipped: bool) -> None:
    """``augment.flip_axes: [0, 1]`` (H-DenseUNet's code: in-plane only) never flips z; the default may."""
    z = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 4, 4, 8).clone()
    augment = AugmentConfig(flip=1.0, flip_axes=flip_axes, scale_intensity=0, shift_intensity=0, gaussian_noise=0)
    sampling = training_sampling((4, 4, 8), 1, 1.0, augment, (0, 1, 2), label_key=None)
    sampling.set_random_state(0)
    orders = set()
    for _ in range(10):
        out = sampling({"image": MetaTensor(z)})[0]["image"]
        orders.add(bool(out[0, 0, 0, 0] > out[0, 0, 0, -1]))
    assert (True in orders) == z_flipped
    with pytest.raises(ValueError):
        AugmentConfig(flip_axes=[3])
