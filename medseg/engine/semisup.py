"""Semi-supervised mutual training (``task: semi_supervised``): two networks, cross pseudo supervision.

A :class:`~medseg.engine.trainer.Trainer` variant (the loop, checkpointing, exact resume and logging are
the base class's). Per iteration, for a batch of labelled crops and one of unlabelled crops, each seen
through two views (:mod:`medseg.transforms.views`: DSAIF Max-/Min-tree, noise or plain):

* network ``k`` gets view ``k``; network 2's view may be rotated by ``j`` x 90 degrees and its logits are
  rotated back, so both outputs live in the crop's frame;
* supervised loss per network: the pipeline's ``loss`` on the labelled crop (DSAIF:
  ``0.5 (CE + soft Dice)``);
* unsupervised loss per network: ``CE(own logits on the unlabelled crop, argmax of the other network's
  softmax)`` (cross pseudo supervision, no confidence threshold, pseudo-labels detached);
* ``loss = sum over networks of supervised + w(t) unsupervised``, ``w(t)`` = ``unsupervised_weight`` x
  ramp-up (:func:`rampup_weight`), ``t`` the global iteration.

Both networks are checkpointed (``net1``, ``net2``), validated (sliding window, Dice) and keep their own
best checkpoint (``checkpoints/best_net1``, ``best_net2``). The model package holds the better network or
the ``ensemble`` of both (mean softmax). Paper vs code choices: see the README section and
:class:`~medseg.config.SemiSupervisedConfig`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from torch import nn

from medseg.config import NetworkConfig, PipelineConfig, SemiSupervisedConfig
from medseg.engine.checkpoint import load_checkpoint, save_checkpoint
from medseg.engine.semisup_data import (
    ROTATION_KEY,
    UNLABELLED_PREFIX,
    VIEW_KEYS,
    mutual_dataset,
    rotate_axes,
    semi_cases,
    steps_per_epoch,
    uses_unlabelled,
)
from medseg.engine.state_io import load_state
from medseg.engine.trainer import Trainer
from medseg.engine.validation import ValidationSet, predict_labels, validation_predictor
from medseg.engine.variants import register_trainer
from medseg.errors import MedsegConfigError
from medseg.metrics.dice import DiceAccumulator
from medseg.model.package import ModelManifest, build_network, save_model_package
from medseg.networks.ensemble import Ensemble, ensemble_member
from medseg.transforms.views import rotate_spatial

NETWORKS = ("net1", "net2")


def rampup_weight(iteration: int, shape: str = "sigmoid", iterations: int = 6000, step: int = 150) -> float:
    """Ramp-up factor in [0, 1] at ``iteration`` (see :class:`~medseg.config.RampUpConfig`).

    DSAIF code: ``exp(-5 (1 - min(t // 150, 40) / 40)^2)``, i.e. ``iterations=6000, step=150``.

    Example:
        >>> round(rampup_weight(0), 4), round(rampup_weight(3000), 4), rampup_weight(6000)
        (0.0067, 0.2865, 1.0)
    """
    if shape == "constant" or iterations <= 0:
        return 1.0
    r = min((iteration // step) * step / iterations, 1.0)
    if shape == "sigmoid":
        return float(math.exp(-5.0 * (1.0 - r) ** 2))
    if shape == "linear":
        return float(r)
    if shape == "cosine":
        return float(0.5 * (1.0 - math.cos(math.pi * r)))
    raise ValueError(f"unknown ramp-up shape {shape!r}")


def _plain(x: Any) -> torch.Tensor:
    """A batch entry as a plain tensor (MetaTensor bookkeeping costs time in every network op)."""
    return x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)


def _main(output: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """Full-resolution output of a network (the first of a deep-supervision list)."""
    return output[0] if isinstance(output, (list, tuple)) else output


def _rotate_back(output: Any, k: torch.Tensor, axes: tuple[int, int] | None) -> Any:
    """Undo the per-sample rotation ``k`` (B,) of network 2's view on its ``(B, C, *spatial)`` output(s)."""
    if axes is None or not bool((k % 4).any()):
        return output
    if isinstance(output, (list, tuple)):
        return [_rotate_back(o, k, axes) for o in output]
    return torch.stack([rotate_spatial(output[b], -int(k[b]), axes, leading=1) for b in range(output.shape[0])])


@register_trainer("semi_supervised")
class SemiSupervisedTrainer(Trainer):
    """Two networks trained by supervision on labelled crops and cross pseudo supervision on unlabelled ones.

    Configured by the pipeline's ``semi_supervised`` section (:class:`~medseg.config.SemiSupervisedConfig`);
    arguments as :class:`~medseg.engine.trainer.Trainer`.
    """

    def __init__(self, config: PipelineConfig, run_dir: str | Path, **kwargs: Any) -> None:
        if config.semi_supervised is None:
            config = config.model_copy(update={"semi_supervised": SemiSupervisedConfig()})
        super().__init__(config, run_dir, **kwargs)
        self.semi: SemiSupervisedConfig = config.semi_supervised  # type: ignore[assignment]  # set just above
        if config.output.kind != "labels":
            raise MedsegConfigError("semi_supervised: needs output kind 'labels' (softmax over classes)")
        self.axes = rotate_axes(config)
        self.iteration = 0
        self.best_net = {name: (-float("inf"), 0) for name in NETWORKS}

    # ------------------------------------------------------------------ setup
    def network_configs(self) -> dict[str, NetworkConfig]:
        return {"net1": self.config.network, "net2": self.semi.second_network or self.config.network}

    def build_networks(self) -> dict[str, nn.Module]:
        return {name: build_network(cfg) for name, cfg in self.network_configs().items()}

    def setup_data(self) -> None:
        self.train_cases, self.unlabelled_cases, self.val_cases = semi_cases(self.config, self.run_dir)
        self.train_ds = mutual_dataset(self.config, self.train_cases, self.unlabelled_cases, self.run_dir)
        self.val_ds = ValidationSet(self.config, self.val_cases) if self.val_cases else None
        self.steps_per_epoch = steps_per_epoch(self.train_ds, self.config)
        self.total_iterations = self.steps_per_epoch * self.epochs

    # ------------------------------------------------------------------ step
    def unsupervised_weight(self) -> float:
        r = self.semi.rampup
        return self.semi.unsupervised_weight * rampup_weight(self.iteration, r.shape, r.iterations, r.step)

    def _outputs(self, batch: dict[str, Any], prefix: str) -> tuple[Any, Any]:
        """Both networks' outputs on a batch's two views, in the crop's frame."""
        dev = self.device
        if prefix + VIEW_KEYS[0] in batch:
            x1, x2 = (_plain(batch[prefix + k]).to(dev, non_blocking=True) for k in VIEW_KEYS)
            k = _plain(batch[prefix + ROTATION_KEY])
        else:
            x1 = x2 = _plain(batch["image"]).to(dev, non_blocking=True)
            k = torch.zeros(x1.shape[0], dtype=torch.long)
        out1 = self.forward["net1"](x1)
        out2 = _rotate_back(self.forward["net2"](x2), k, self.axes)
        return out1, out2

    def train_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        label = _plain(batch["label"]).to(self.device, non_blocking=True)
        target = self.head.training_target(label)
        out1, out2 = self._outputs(batch, "")
        sup1, sup2 = self.loss_fn(out1, target), self.loss_fn(out2, target)
        terms = {"loss_sup_net1": sup1, "loss_sup_net2": sup2}
        loss = sup1 + sup2
        if UNLABELLED_PREFIX + VIEW_KEYS[0] in batch:
            u1, u2 = (_main(o) for o in self._outputs(batch, UNLABELLED_PREFIX))
            pseudo1 = torch.argmax(u2.detach(), dim=1)  # network 2's hard labels teach network 1
            pseudo2 = torch.argmax(u1.detach(), dim=1)
            unsup1, unsup2 = F.cross_entropy(u1.float(), pseudo1), F.cross_entropy(u2.float(), pseudo2)
            w = self.unsupervised_weight()
            loss = loss + w * (unsup1 + unsup2)
            terms.update(loss_unsup_net1=unsup1, loss_unsup_net2=unsup2, unsup_weight=torch.tensor(w))
        return {"loss": loss, **terms}

    def optimisation_step(self, batch: dict[str, Any]) -> dict[str, float]:
        terms = super().optimisation_step(batch)
        self.iteration += 1
        t = self.config.train
        if self.semi.poly_per_iteration and t.lr_schedule == "poly":
            # per-iteration poly decay (DSAIF code); at epoch ends it equals the base loop's per-epoch value
            factor = max(1.0 - self.iteration / max(self.total_iterations, 1), 0.0) ** t.poly_power
            for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs):
                group["lr"] = base * factor
        sup = [v for k, v in terms.items() if k.startswith("loss_sup_")]
        unsup = [v for k, v in terms.items() if k.startswith("loss_unsup_")]
        terms["loss_sup"] = float(np.mean(sup))
        if unsup:
            terms["loss_unsup"] = float(np.mean(unsup))
        return terms

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Dice of each network and of their mean softmax; saves each network's best checkpoint.

        ``val_score`` is the exported model's: the better network's Dice, or the ensemble's.
        """
        assert self.val_ds is not None
        labels = [v for v in self.config.data.labels if v != 0]
        acc = {name: DiceAccumulator(labels) for name in (*NETWORKS, "ensemble")}
        members = {name: self.exported(name) for name in NETWORKS}
        members["ensemble"] = self.exported("ensemble")
        predictors = {
            name: validation_predictor(net, manifest, self.head, self.device, self.run_dir) for name, (net, manifest) in members.items()
        }
        for case in self.val_ds:
            for name, predictor in predictors.items():
                acc[name].update(predict_labels(predictor, case), case.label)
        scores = {name: float(np.mean(list(a.per_case_mean().values()))) for name, a in acc.items()}
        out = {f"val_score_{name}": s for name, s in scores.items()}
        names = self.config.data.labels
        for name in NETWORKS:
            out.update({f"val_dice_{name}_{names[k]}": v for k, v in acc[name].per_case_mean().items()})
            if scores[name] > self.best_net[name][0]:
                self.best_net[name] = (scores[name], self.epoch + 1)
                save_checkpoint(self.run_dir / "checkpoints" / f"best_{name}", {name: self.networks[name]}, {"epoch": self.epoch + 1, "score": scores[name]})
        out["val_score"] = scores["ensemble"] if self.semi.export == "ensemble" else max(scores["net1"], scores["net2"])
        return out

    # ------------------------------------------------------------------ state
    def _state(self) -> dict[str, Any]:
        state = super()._state()
        state["iteration"] = self.iteration
        state["best_per_network"] = {name: [float(s), int(e)] for name, (s, e) in self.best_net.items()}
        return state

    def _load(self, folder: Path) -> None:
        super()._load(folder)
        state = load_state(folder, "state")
        self.iteration = int(state["iteration"])
        self.best_net = {name: (float(s), int(e)) for name, (s, e) in state["best_per_network"].items()}

    # ------------------------------------------------------------------ export
    def exported_choice(self) -> str:
        """``net1``, ``net2`` or ``ensemble``: what the model package holds."""
        if self.semi.export == "ensemble":
            return "ensemble"
        return max(NETWORKS, key=lambda n: (self.best_net[n][0], n == "net1"))

    def exported_network_config(self, choice: str) -> NetworkConfig:
        """The network section of the package that exports ``choice`` (``net1``, ``net2`` or ``ensemble``)."""
        configs = self.network_configs()
        if choice == "ensemble":
            return NetworkConfig(name="ensemble", kwargs={"members": [ensemble_member(configs[n]) for n in NETWORKS]})
        return configs[choice]

    def exported(self, choice: str) -> tuple[nn.Module, ModelManifest]:
        """The live network of ``choice`` (the ensemble: both live networks behind one module) and its manifest."""
        manifest = self.manifest().model_copy(update={"network": self.exported_network_config(choice)})
        if choice == "ensemble":
            return Ensemble.from_modules([self.networks[n] for n in NETWORKS]), manifest
        return self.networks[choice], manifest

    def export(self) -> Path:
        """Model package of the better network (its own best checkpoint) or of the ensemble.

        The ensemble is taken from the joint best checkpoint (best ensemble Dice); without validation
        the last weights are used (and ``better`` means network 1).
        """
        choice = self.exported_choice()
        checkpoints = self.run_dir / "checkpoints"
        network_cfg = self.exported_network_config(choice)
        net = build_network(network_cfg)
        if choice == "ensemble":
            source = checkpoints / "best" if (checkpoints / "best").is_dir() else checkpoints / "last"
            load_checkpoint(source, dict(zip(NETWORKS, net.members)))  # type: ignore[arg-type]  # ModuleList items are modules
        else:
            own = checkpoints / f"best_{choice}"
            source = own if own.is_dir() else checkpoints / "last"
            load_checkpoint(source, {choice: net})
        manifest = self.manifest()
        manifest = manifest.model_copy(update={"network": network_cfg})
        manifest.training["semi_supervised"] = self.summary_info(choice)
        return save_model_package(self.run_dir / "model", net, manifest, force=True)

    def summary_info(self, choice: str) -> dict[str, Any]:
        return {
            "exported": choice,
            "perturbation": self.semi.perturbation,
            "best_per_network": {n: {"val_score": s if e else None, "epoch": e} for n, (s, e) in self.best_net.items()},
            "labelled_cases": [c["case"] for c in self.train_cases],
            "unlabelled_cases": [c["case"] for c in self.unlabelled_cases] if uses_unlabelled(self.semi) else [],
            "iterations": self.iteration,
        }
