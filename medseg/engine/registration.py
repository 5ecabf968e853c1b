"""Registration as a trainer variant (``task: registration``): pairs in, displacement-field model package out.

Only what differs from segmentation is here: the pair dataset, the step (both images to the network,
the registration loss over its output dict) and validation (Dice of the moving labels warped onto the
fixed ones, folding). The loop, checkpoints, exact resume, logs and export are :class:`Trainer`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from torch import nn
from torch.utils.data import Dataset

from medseg.config import PipelineConfig, parse_output
from medseg.data.pairs import Pair, discover_pairs, generate_pairs, split_pairs
from medseg.engine.trainer import Trainer
from medseg.engine.variants import register_trainer
from medseg.errors import MedsegConfigError
from medseg.losses import create_loss
from medseg.metrics.registration import folding_fraction, warped_label_dice
from medseg.model.package import build_network, core_network
from medseg.transforms.registration import PairGrid, load_volume, network_size, pad_to, random_crop_slices


def pipeline_pairs(config: PipelineConfig, run_dir: Path) -> Any:
    """The :class:`~medseg.data.pairs.PairSet` of a registration pipeline (synthetic pairs generated once)."""
    if config.data.synthetic is not None:
        syn = config.data.synthetic
        folder = run_dir / "data"
        if not (folder / "pairs.json").is_file():
            generate_pairs(syn.kind, folder, syn.n_train, syn.n_test, syn.seed, **syn.options)
        return discover_pairs(folder / "pairs.json", "pairs_json")
    assert config.data.dataset is not None
    return discover_pairs(config.resolve(config.data.dataset), config.data.layout)


def size_divisor(network: nn.Module, dims: int = 3) -> tuple[int, ...]:
    """Per axis, what the network's spatial sizes must be multiples of (its ``size_divisor``; 1 without one)."""
    value = getattr(core_network(network), "size_divisor", 1)
    return tuple(int(v) for v in value) if isinstance(value, (tuple, list)) else (int(value),) * dims


class PairDataset(Dataset):
    """Pairs on the network grid (:class:`~medseg.transforms.registration.PairGrid`).

    Each image (with its labels) is read, normalised and brought to its network grid once and cached
    (``cache``), so an unpaired release of N subjects costs N images of memory, not N^2 pairs.

    Training items: ``fixed``/``moving`` ``(1, *patch)`` tensors, padded to at least ``patch`` and
    randomly cropped to it, with joint random flips (``augment.flip``) and independent intensity
    scaling/shift/noise per image. Evaluation items: the whole grid zero-padded to ``network_size``,
    with ``fixed_labels``/``moving_labels`` when the pair has both, ``crop`` (slices of the original
    grid) and ``spacing`` (mm) of the grid.
    """

    def __init__(
        self, pairs: list[Pair], config: PipelineConfig, divisor: tuple[int, ...], training: bool, cache: dict[tuple[str, str | None], Any] | None = None
    ) -> None:
        self.pairs = pairs
        self.config = config
        self.grid = PairGrid(config.preprocess)
        self.divisor = divisor
        self.training = training
        self.patch = tuple(config.train.patch_size)
        self.cache = cache

    def __len__(self) -> int:
        return len(self.pairs)

    def _prepared(self, image: str, labels: str | None) -> dict[str, MetaTensor]:
        key = (image, labels)
        if self.cache is not None and key in self.cache:
            return self.cache[key]
        prepared = self.grid.prepare(load_volume(image), load_volume(labels, "label") if labels else None)
        if self.cache is not None:
            self.cache[key] = prepared
        return prepared

    def __getitem__(self, index: int) -> dict[str, Any]:
        pair = self.pairs[index]
        with_labels = not self.training and pair.get("fixed_labels") and pair.get("moving_labels")
        fixed = self._prepared(pair["fixed"], pair["fixed_labels"] if with_labels else None)
        moving = self._prepared(pair["moving"], pair["moving_labels"] if with_labels else None)
        on_grid = self.grid.pair(fixed, moving)
        shape = tuple(on_grid["fixed"].shape[1:])
        tensors = {k: v.as_tensor().float() for k, v in on_grid.items()}
        if self.training:
            size: Sequence[int] = [max(s, p) for s, p in zip(shape, self.patch, strict=True)]
            window = random_crop_slices(size, self.patch)
            out = {k: pad_to(v, size)[0][(slice(None), *window)] for k, v in tensors.items()}
            return {"case": pair["case"], **self._augment(out)}
        size = network_size(shape, self.patch, self.divisor)
        out = {}
        for key, value in tensors.items():
            out[key], crop = pad_to(value, size)
        spacing = [float(s) for s in np.linalg.norm(np.asarray(on_grid["fixed"].affine)[:3, :3], axis=0)]
        return {"case": pair["case"], **out, "crop": crop, "spacing": spacing}

    def _augment(self, item: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        aug = self.config.train.augment
        for axis in range(1, 4):
            if aug.flip > 0 and torch.rand(()) < aug.flip:
                item = {k: v.flip(axis) for k, v in item.items()}
        for key in ("fixed", "moving"):
            x = item[key]
            if aug.scale_intensity > 0 and torch.rand(()) < aug.scale_intensity:
                x = x * (1.0 + 0.2 * (torch.rand(()) - 0.5))
            if aug.shift_intensity > 0 and torch.rand(()) < aug.shift_intensity:
                x = x + 0.2 * (torch.rand(()) - 0.5)
            if aug.gaussian_noise > 0 and torch.rand(()) < aug.gaussian_noise:
                x = x + 0.02 * torch.randn_like(x)
            item[key] = x
        return item


@register_trainer("registration")
class RegistrationTrainer(Trainer):
    """Unsupervised pairwise registration (MICDIR, VoxelMorph) through the shared loop.

    Pipeline keys it reads: ``data`` (a pair source: ``pairs.json``, a Learn2Reg JSON, ``imagesTr/`` or
    OASIS folders, or ``synthetic: {kind: mni152_pairs}``), ``data.labels`` (label values scored after
    warping), ``preprocess`` (the network grid and intensity preset), ``network`` (a registry network
    with ``output_kind`` displacement), ``loss`` (``micdir``, ``voxelmorph`` or ``registration``, with
    their weights), ``train.patch_size`` (the training grid: volumes are padded to at least it and
    randomly cropped to it; a multiple of the network's stride), ``train.batch_size``.
    ``output.kind`` is ``displacement`` (set when the YAML does not name one).
    """

    def __init__(self, config: PipelineConfig, run_dir: str | Path, **kwargs: Any) -> None:
        kind = config.output.kind
        if "output" not in config.model_fields_set or kind == "labels":
            config = config.model_copy(update={"output": parse_output({"kind": "displacement"})})
        elif kind != "displacement":
            raise MedsegConfigError(f"output.kind: a registration pipeline outputs 'displacement', got '{kind}'")
        super().__init__(config, run_dir, **kwargs)

    def setup_data(self) -> None:
        cfg = self.config
        pairset = pipeline_pairs(cfg, self.run_dir)
        self.train_cases, self.val_cases = split_pairs(pairset, cfg.seed, cfg.data.val_fraction, cfg.data.val_cases)
        if not self.train_cases:
            raise MedsegConfigError("no training pairs left after the validation split")
        divisor = size_divisor(build_network(cfg.network))
        if any(p % d for p, d in zip(cfg.train.patch_size, divisor, strict=True)):
            raise MedsegConfigError(f"train.patch_size: {list(cfg.train.patch_size)} must be multiples of the network's stride {list(divisor)}")
        cache: dict[tuple[str, str | None], Any] | None = {} if cfg.data.cache else None
        self.train_ds = PairDataset(self.train_cases, cfg, divisor, training=True, cache=cache)
        self.val_ds = PairDataset(self.val_cases, cfg, divisor, training=False, cache=cache) if self.val_cases else None

    def build_loss(self) -> nn.Module:
        kwargs = dict(self.config.loss.kwargs)
        kwargs.setdefault("spatial_dims", int(self.config.network.kwargs.get("spatial_dims", 3)))
        try:
            return create_loss(self.config.loss.name, **kwargs)
        except (KeyError, TypeError, ValueError) as exc:
            raise MedsegConfigError(f"loss: {exc}") from exc

    def train_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Both images through the network; the loss's weighted terms (each logged) and their sum."""
        fixed = batch["fixed"].to(self.device, non_blocking=True)
        moving = batch["moving"].to(self.device, non_blocking=True)
        prediction = self.forward["model"](fixed, moving)
        terms_fn = getattr(self.loss_fn, "terms", None)
        if terms_fn is None:
            return {"loss": self.loss_fn(prediction, fixed, moving)}
        terms = terms_fn(prediction, fixed, moving)
        weights: dict[str, float] = self.loss_fn.weights  # type: ignore[assignment]  # the registration losses' term weights
        total = sum((weights[k] * v for k, v in terms.items()), fixed.new_zeros(()))
        return {"loss": total, **{f"loss_{k}": v.detach() for k, v in terms.items()}}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Dice of warped moving labels per label (and identity Dice), folding fraction; ``val_score`` is
        the mean Dice, or minus the loss when the validation pairs have no labels."""
        assert self.val_ds is not None
        net = self.networks["model"].eval()
        labels = [v for v in self.config.data.labels if v != 0]
        dice, before, folding, losses = [], [], [], []
        for item in self.val_ds:
            fixed = item["fixed"][None].to(self.device)
            moving = item["moving"][None].to(self.device)
            with torch.autocast(device_type=self.device.type, enabled=self.use_amp):
                prediction = net(fixed, moving)
            losses.append(float(self.loss_fn(prediction, fixed, moving)))
            crop = (slice(None), slice(None), *item["crop"])
            flow = prediction["flow"].float()[crop]
            folding.append(float(folding_fraction(flow)[0]))
            if "fixed_labels" in item:
                fl = item["fixed_labels"][None].to(self.device)[crop].long()
                ml = item["moving_labels"][None].to(self.device)[crop].long()
                dice.append(warped_label_dice(ml, fl, flow, labels)[0].cpu().numpy())
                before.append(warped_label_dice(ml, fl, torch.zeros_like(flow), labels)[0].cpu().numpy())
        out = {"val_loss": float(np.mean(losses)), "val_folding": float(np.mean(folding))}
        if dice:
            per_label = np.mean(dice, axis=0)
            names = self.config.data.labels
            out.update({f"val_dice_{names[k]}": float(v) for k, v in zip(labels, per_label, strict=True)})
            out["val_dice_identity"] = float(np.mean(before))
            out["val_score"] = float(per_label.mean())
        else:
            out["val_score"] = -out["val_loss"]
        return out


__all__ = ["PairDataset", "RegistrationTrainer", "pipeline_pairs", "size_divisor"]
