"""The volumetric training loop shared by every pipeline.

Variants (semi-supervised mutual training, registration) subclass :class:`Trainer` and override
:meth:`Trainer.build_networks`, :meth:`Trainer.train_step` and :meth:`Trainer.validate`; the loop,
checkpointing, resume, logging and export stay here.

Exact resume: every epoch reseeds python/numpy/torch and the data loader from ``(seed, epoch)``, and a
checkpoint holds weights, optimizer, scheduler, grad scaler, RNG states, epoch and history, so a run
killed after epoch k and resumed ends with the same weights as an uninterrupted one (CPU, deterministic).
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from monai.data import DataLoader
from torch import nn

from medseg.config import PipelineConfig
from medseg.config.sections import DETERMINISTIC_THREADS
from medseg.device import resolve_device
from medseg.engine import distributed
from medseg.engine.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from medseg.engine.data import epoch_loader, pipeline_cases, split_cases, training_dataset
from medseg.engine.init_weights import initialise_network
from medseg.engine.interrupt import StopRequest, TrainingInterrupted
from medseg.engine.logs import RunLog
from medseg.engine.state_io import rng_state, set_rng_state
from medseg.engine.validation import ValidationSet, predict_labels, validation_predictor
from medseg.engine.variants import register_trainer
from medseg.errors import MedsegConfigError, MedsegOutputError
from medseg.io.atomic import ensure_writable_dir, write_text
from medseg.losses import create_loss
from medseg.model.domain import TrainingData, profile_cases
from medseg.model.heads import check_network, create_head
from medseg.model.package import ModelManifest, build_network, save_model_package
from medseg.networks.freeze import freeze_submodules
from medseg.progress import console, make_progress, plain


def epoch_seed(seed: int, epoch: int) -> int:
    """Well-mixed 32-bit seed for ``(seed, epoch)``."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@register_trainer("segmentation")
class Trainer:
    """Patch-based supervised training from a validated pipeline config.

    Under ``torchrun`` every process runs this loop on its own device with its networks in DDP and a
    distributed sampler; rank 0 alone validates, logs, checkpoints and exports (see
    :mod:`medseg.engine.distributed`).

    Args:
        config: the pipeline (see :mod:`medseg.config`).
        run_dir: output folder (checkpoints, metrics.csv, progress.png, model package).
        device: ``auto|cpu|cuda|cuda:N|mps``.
        resume: continue from ``run_dir/checkpoints/last``.
        epochs: override ``train.epochs`` (with ``resume``, extends a finished run).
        force: start afresh in an existing ``run_dir``.
        progress: show progress bars.

    Example:
        >>> Trainer(load_pipeline("pipelines/demo.yaml"), Path("runs/demo")).fit()  # doctest: +SKIP
    """

    #: DDP option for variants whose forward leaves some parameters unused
    ddp_find_unused_parameters = False

    #: training data (patches of a MONAI dataset; the variants' own datasets)
    train_ds: Any
    #: validation cases (a ValidationSet; the registration variant: a dataset of its pairs)
    val_ds: Any

    def __init__(
        self,
        config: PipelineConfig,
        run_dir: str | Path,
        device: str = "auto",
        resume: bool = False,
        epochs: int | None = None,
        force: bool = False,
        progress: bool = True,
    ) -> None:
        if epochs is not None:
            config = config.model_copy(update={"train": config.train.model_copy(update={"epochs": epochs})})
        self.config = config
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.show_progress = progress and distributed.is_main()
        self.distributed = distributed.init(distributed.local_device(resolve_device(device)[0]))  # torchrun: join the group
        with distributed.main_first():
            self._check_run_dir(force)
        self.device, self.device_reason = resolve_device(device)
        self.device = distributed.local_device(self.device)
        self.epochs = config.train.epochs
        self.epoch = 0
        self.epoch_step = 0  # steps done in the unfinished epoch (a checkpoint written on SIGINT/SIGTERM)
        self.stop = StopRequest(enabled=False)
        self.best_score = -float("inf")
        self.best_epoch = 0
        self.head = create_head(config.output, config.data.labels)
        self.log = RunLog(self.run_dir)
        self.first_step_seconds: float | None = None
        self.init_report: dict[str, Any] | None = None
        if config.roi is not None and not config.resolve(config.roi.localiser).is_dir():
            raise MedsegConfigError(f"roi.localiser: {config.resolve(config.roi.localiser)} is not a model package folder")

    # ------------------------------------------------------------------ setup
    def _check_run_dir(self, force: bool) -> None:
        last = self.run_dir / "checkpoints" / "last"
        if self.resume and not last.is_dir():
            raise MedsegOutputError(f"{self.run_dir}: nothing to resume (no checkpoints/last); run without --resume to start afresh")
        if not self.resume and has_checkpoint(self.run_dir) and not force:
            raise MedsegOutputError(f"{self.run_dir}: run folder exists (use --resume to continue or --force to start afresh)")
        ensure_writable_dir(self.run_dir)

    def setup(self) -> None:
        """Data, networks, loss, optimizer, scheduler, scaler (and checkpoint state when resuming)."""
        cfg = self.config
        threads = cfg.train.threads or (DETERMINISTIC_THREADS if cfg.deterministic else None)
        if threads is not None:  # results depend on the thread count: fixed, they reproduce on any machine
            torch.set_num_threads(threads)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        seed_everything(cfg.seed)
        if distributed.is_main():
            write_text(self.run_dir / "config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        self.setup_data()
        self.networks = {name: net.to(self.device) for name, net in self.build_networks().items()}
        for net in self.networks.values():
            freeze_submodules(net, cfg.train.freeze)
        self.loss_fn = self.build_loss()
        params = [p for net in self.networks.values() for p in net.parameters() if p.requires_grad]
        self.optimizer = self.build_optimizer(params)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.use_amp = cfg.train.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        wrapped = {name: distributed.wrap(net, self.device, self.ddp_find_unused_parameters) for name, net in self.networks.items()}
        self.forward = {name: (torch.compile(net) if cfg.train.compile else net) for name, net in wrapped.items()}
        if self.resume:
            self._load(self.run_dir / "checkpoints" / "last")

    def setup_data(self) -> None:
        with distributed.main_first():  # rank 0 generates a synthetic dataset once
            cases = pipeline_cases(self.config, self.run_dir)
        self.train_cases, self.val_cases = split_cases(cases, self.config)
        if not self.train_cases:
            raise MedsegConfigError("no training cases left after the validation split")
        self.train_ds = training_dataset(self.config, self.train_cases)
        self.val_ds = ValidationSet(self.config, self.val_cases) if self.val_cases else None

    def build_networks(self) -> dict[str, nn.Module]:
        """Networks to train, by checkpoint name (variants may return several); applies ``network.init_from``."""
        net = build_network(self.config.network)
        check_network(self.head, net)
        if self.config.network.init_from is not None and not self.resume:
            self.init_report = initialise_network(net, self.config.network.init_from, self.config.base_dir)
        return {"model": net}

    def build_loss(self) -> nn.Module:
        ds = bool(self.config.network.kwargs.get("deep_supervision", False))
        return create_loss(self.config.loss.name, deep_supervision=ds, **self.config.loss.kwargs)

    def build_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        t = self.config.train
        if t.optimizer == "sgd":
            return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, nesterov=t.nesterov and t.momentum > 0, weight_decay=t.weight_decay)
        cls = torch.optim.Adam if t.optimizer == "adam" else torch.optim.AdamW
        return cls(params, lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)

    def _lr_factor(self, epoch: int) -> float:
        if self.config.train.lr_schedule == "constant":
            return 1.0
        return max(1.0 - epoch / self.epochs, 0.0) ** self.config.train.poly_power

    # ------------------------------------------------------------------ loop
    def fit(self) -> dict[str, Any]:
        """Train to ``epochs``, validating every ``val_every``; export the model package. Returns a summary."""
        self.setup()
        cfg = self.config
        if self.epoch >= self.epochs:
            console.print(f"[yellow]run already has {self.epoch} epoch(s); use --epochs N to extend it[/]")
        if distributed.is_main():
            console.print(f"device: {self.device_reason}" + (f" ({distributed.world_size()} processes)" if self.distributed else ""))
            if self.head.describe():
                console.print(self.head.describe())
        start = time.perf_counter()
        with make_progress(self.show_progress) as bar, StopRequest(not self.distributed) as self.stop:
            epoch_task = bar.add_task("epochs", total=self.epochs, completed=self.epoch, status="")
            for epoch in range(self.epoch, self.epochs):
                seed = epoch_seed(cfg.seed, epoch)
                seed_everything(seed if distributed.rank() == 0 else epoch_seed(seed, distributed.rank()))
                t0 = time.perf_counter()
                losses = distributed.mean_over_ranks(self.train_epoch(epoch_loader(self.train_ds, cfg, seed), bar))
                if self.stop.requested:  # the step is done: checkpoint it (with self.epoch_step) and stop
                    self._save(self.run_dir / "checkpoints" / "last")
                    raise TrainingInterrupted(str(self.run_dir), epoch + 1, self.epoch_step)
                self.scheduler.step()
                row: dict[str, Any] = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"], **losses}
                if self.val_ds is not None and distributed.is_main() and ((epoch + 1) % cfg.train.val_every == 0 or epoch + 1 == self.epochs):
                    row.update(self.validate())
                row["seconds"] = round(time.perf_counter() - t0, 3)
                self.epoch = epoch + 1
                improved = "val_score" in row and row["val_score"] > self.best_score
                if improved:
                    self.best_score, self.best_epoch = float(row["val_score"]), self.epoch
                if distributed.is_main():
                    self.log.append(row)
                    self._save(self.run_dir / "checkpoints" / "last")
                    if improved or (self.val_ds is None and self.epoch == self.epochs):
                        self._save(self.run_dir / "checkpoints" / "best")
                distributed.barrier()
                status = f"loss {row['loss']:.4f}" + (f" val {row['val_score']:.3f}" if "val_score" in row else "")
                bar.update(epoch_task, advance=1, status=status)
                plain(f"epoch {self.epoch}/{self.epochs}: {status}", self.show_progress)
        summary_extra = {"world_size": distributed.world_size(), "replicas_identical": distributed.replicas_identical(self.networks)} if self.distributed else {}
        package = self.export() if distributed.is_main() else self.run_dir / "model"
        distributed.barrier()
        return {
            **summary_extra,
            "run_dir": str(self.run_dir),
            "epochs": self.epoch,
            "best_epoch": self.best_epoch,
            "best_val_score": self.best_score if self.best_epoch else None,
            "model": str(package),
            "seconds": round(time.perf_counter() - start, 1),
            "first_step_seconds": None if self.first_step_seconds is None else round(self.first_step_seconds, 3),
        }

    def train_epoch(self, loader: DataLoader, bar: Any) -> dict[str, float]:
        for net in self.networks.values():
            net.train()
        steps = self.config.train.iterations_per_epoch or len(loader)
        task = bar.add_task("  train", total=steps, status="")
        totals: dict[str, float] = {}
        done = skipped = 0
        fast_forward, self.epoch_step = self.epoch_step, 0  # resumed inside this epoch: its first steps were done
        while done < steps and not self.stop.requested:
            for batch in loader:
                if not self.accept_batch(batch):
                    skipped += 1
                    if skipped > 100 * steps:
                        raise MedsegConfigError(f"train.skip_incomplete_batches: {skipped} batches of this epoch lack a class of data.labels")
                    continue
                if done < fast_forward:  # the same batches in the same order (the loader is seeded by the epoch)
                    done += 1
                    continue
                t_step = time.perf_counter()
                terms = self.optimisation_step(batch)
                if self.first_step_seconds is None:  # includes torch.compile's compile time when train.compile
                    self.first_step_seconds = time.perf_counter() - t_step
                for k, v in terms.items():
                    totals[k] = totals.get(k, 0.0) + v
                done += 1
                bar.update(task, advance=1, status=f"loss {terms['loss']:.4f}")
                if done >= steps or self.stop.requested:
                    break
        self.epoch_step = done if self.stop.requested else 0
        bar.remove_task(task)
        return {k: v / max(done - fast_forward, 1) for k, v in totals.items()}

    def accept_batch(self, batch: dict[str, Any]) -> bool:
        """``train.skip_incomplete_batches``: train only on batches whose label holds every class."""
        if not self.config.train.skip_incomplete_batches:
            return True
        present = set(torch.unique(torch.as_tensor(batch["label"])).long().tolist())
        return set(self.config.data.labels) <= present

    def optimisation_step(self, batch: dict[str, Any]) -> dict[str, float]:
        """Forward, backward (AMP on CUDA), gradient clipping, optimizer step; returns the loss terms."""
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=self.device.type, enabled=self.use_amp):
            terms = self.train_step(batch)
        self.scaler.scale(terms["loss"]).backward()
        if self.config.train.grad_clip:
            self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.config.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return {k: float(v.detach()) for k, v in terms.items()}

    def train_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Supervised step: loss of the network's output against the label (variants override)."""
        image = batch["image"].to(self.device, non_blocking=True).as_tensor()
        target = self.head.training_target(batch["label"].to(self.device, non_blocking=True).as_tensor())
        return {"loss": self.loss_fn(self.forward["model"](image), target)}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Predict the validation cases with the shipped predictor (input geometry, the package's window and TTA
        settings, head decoding) and score them with the head's scorer (default: Dice per foreground label;
        nested outputs: WT/TC/ET region Dice). See :mod:`medseg.engine.validation`."""
        assert self.val_ds is not None
        predictor = validation_predictor(self.networks["model"], self.manifest(), self.head, self.device, self.run_dir)
        scorer = self.head.validation_scorer()
        for case in self.val_ds:
            scorer.update(predict_labels(predictor, case), case.label)
        return scorer.result()

    # ------------------------------------------------------------------ state
    def _state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "epoch_step": self.epoch_step,
            "epochs": self.epochs,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "config_sha256": self.config.sha256(),
            "history": self.log.rows,
        }

    def _save(self, folder: Path) -> None:
        save_checkpoint(folder, self.networks, self._state())

    def _load(self, folder: Path) -> None:
        state = load_checkpoint(folder, self.networks, device=str(self.device))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        # the schedule depends on the (possibly extended) epoch count: recompute the current rate from it
        for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs):
            group["lr"] = base * self._lr_factor(self.scheduler.last_epoch)
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        self.epoch, self.best_score, self.best_epoch = int(state["epoch"]), float(state["best_score"]), int(state["best_epoch"])
        self.epoch_step = int(state.get("epoch_step", 0))
        self.log.restore(state["history"])
        if state["config_sha256"] != self.config.sha256():
            console.print("[yellow]note: the configuration differs from the one this run started with[/]")

    def manifest(self) -> ModelManifest:
        cfg = self.config
        return ModelManifest(
            name=cfg.name,
            network=cfg.network,
            output=cfg.output,
            labels=cfg.data.labels,
            modalities=cfg.data.modalities,
            preprocess=cfg.preprocess,
            patch_size=cfg.train.patch_size,
            inference=cfg.inference,
            training={
                "pipeline": cfg.name,
                "config_sha256": cfg.sha256(),
                "epochs": self.epoch,
                "best_epoch": self.best_epoch,
                "best_val_score": self.best_score if self.best_epoch else None,
                "train_cases": [c["case"] for c in self.train_cases],
                "val_cases": [c["case"] for c in self.val_cases],
                **({"init_from": self.init_report} if self.init_report else {}),
            },
            roi=cfg.roi.model_copy(update={"localiser": "localiser"}) if cfg.roi is not None else None,
            training_data=self.data_profile(),
        )

    def data_profile(self) -> TrainingData | None:
        """What the training cases hold (modalities, voxel sizes, intensity percentiles), computed once."""
        if getattr(self, "_data_profile", None) is None:
            self._data_profile = profile_cases(self.train_cases, self.config.data.modalities, self.config.preprocess)
        return self._data_profile

    def export(self) -> Path:
        """Write ``run_dir/model`` from the best checkpoint (the last one without validation)."""
        best = self.run_dir / "checkpoints" / "best"
        source = best if best.is_dir() else self.run_dir / "checkpoints" / "last"
        net = build_network(self.config.network)
        load_checkpoint(source, {"model": net})
        attachments = {"localiser": self.config.resolve(self.config.roi.localiser)} if self.config.roi is not None else None
        return save_model_package(self.run_dir / "model", net, self.manifest(), force=True, attachments=attachments)
