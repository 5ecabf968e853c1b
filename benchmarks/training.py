"""Cases 6 and 7: training iterations/s against a MONAI-tutorial loop, data pipeline samples/s.

Both loops train the same network (a deep copy of one initialisation) with Adam, DiceCE loss, the same
patch size and batch (2 patches). The MONAI-tutorial loop is the eager fp32 loop of MONAI's 3D
segmentation tutorials (``zero_grad``, forward, ``DiceCELoss``, ``backward``, ``step``); medseg's is
``Trainer.optimisation_step`` (AMP and ``cudnn.benchmark`` on CUDA, gradient clipping). "With data
loading" adds each side's loader: medseg's ``epoch_loader`` over its cached training dataset, MONAI's
``CacheDataset`` + ``DataLoader`` over the same transform chain. Case 7 iterates the loaders alone,
medseg's against ``CacheDataset`` + ``ThreadDataLoader``.
"""

from __future__ import annotations

import copy
import itertools
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from monai.losses import DiceCELoss

from benchmarks.common import Row, sync
from medseg.config import PipelineConfig


def _config(cfg: dict[str, Any], device: torch.device) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "name": "bench",
            "seed": 0,
            "data": {
                "synthetic": {"kind": "ct_phantom", "n_train": cfg["train_cases"], "n_test": 0, "seed": 1},
                "labels": {0: "background", 1: "organ", 2: "lesion"},
                "modalities": ["CT"],
                "val_fraction": 0.0,
            },
            "preprocess": {"intensity": "ct", "ct_window": [-200, 250], "target_spacing": list(cfg["train_spacing"])},
            "network": {"name": "unet", "kwargs": {**cfg["unet_kwargs"], "out_channels": 3}},
            "train": {"epochs": 1, "batch_size": 2, "patch_size": list(cfg["train_patch"]), "samples_per_volume": 2, "optimizer": "adam",
                      "lr": 1e-3, "weight_decay": 0.0, "num_workers": 0},
        }
    )


def _rate(step: Any, n: int, device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    sync(device)
    return n / (time.perf_counter() - t0)


def _median_rates(fns: dict[str, Any], n: int, cfg: dict[str, Any], device: torch.device) -> dict[str, float]:
    """Median calls/s of each function over interleaved rounds (ABAB, then BABA) after warm-up."""
    rate: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(cfg["warmup"] + cfg["repeats"]):
        for who in list(fns) if r % 2 == 0 else list(reversed(fns)):
            v = _rate(fns[who], n, device)
            if r >= cfg["warmup"]:
                rate[who].append(v)
    return {k: sorted(v)[len(v) // 2] for k, v in rate.items()}


def training_cases(cfg: dict[str, Any], device: torch.device) -> list[Row]:
    from monai.data import CacheDataset, DataLoader, ThreadDataLoader

    from medseg.engine.data import epoch_loader
    from medseg.engine.trainer import Trainer

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(_config(cfg, device), Path(tmp) / "run", device=str(device), progress=False)
        trainer.setup()
        net = trainer.networks["model"].train()
        ref_net = copy.deepcopy(net)
        ref_opt = torch.optim.Adam(ref_net.parameters(), lr=1e-3)
        ref_loss = DiceCELoss(to_onehot_y=True, softmax=True)
        items = [dict(c) for c in trainer.train_cases]
        monai_ds = CacheDataset(items, transform=trainer.train_ds.transform, cache_rate=1.0, num_workers=0, progress=False)
        loaders = {"medseg": lambda: epoch_loader(trainer.train_ds, trainer.config, 0)}

        def monai_step(batch: dict[str, Any]) -> None:
            x, y = batch["image"].to(device), batch["label"].to(device)
            ref_opt.zero_grad()
            loss = ref_loss(ref_net(x), y)
            loss.backward()
            ref_opt.step()

        batch = next(iter(loaders["medseg"]()))
        steps = {"medseg": lambda: trainer.optimisation_step(batch), "monai": lambda: monai_step(batch)}
        patch = "x".join(map(str, cfg["train_patch"]))
        med = _median_rates(steps, cfg["train_steps"], cfg, device)
        target = {"target": ">= 1.8x (GPU)", "met": med["medseg"] >= 1.8 * med["monai"]} if device.type == "cuda" else {}
        rows.append(Row("6 training", f"patch {patch}, batch 2, no data loading", "iterations/s", med["medseg"], med["monai"], "it/s", better="higher", **target))

        def cycle(make: Any) -> Any:
            return itertools.chain.from_iterable(make() for _ in itertools.count())

        streams = {"medseg": cycle(loaders["medseg"]), "monai": cycle(lambda: DataLoader(monai_ds, batch_size=1, shuffle=True, num_workers=0))}
        loaded = {"medseg": lambda: trainer.optimisation_step(next(streams["medseg"])), "monai": lambda: monai_step(next(streams["monai"]))}
        med = _median_rates(loaded, cfg["train_steps"], cfg, device)
        rows.append(Row("6 training", f"patch {patch}, batch 2, with data loading", "iterations/s", med["medseg"], med["monai"], "it/s", better="higher", **target))

        # case 7: the loaders alone (samples = patches)
        threads = cycle(lambda: ThreadDataLoader(monai_ds, batch_size=1, shuffle=True, num_workers=0))
        pulls = {"medseg": lambda: next(streams["medseg"]), "monai": lambda: next(threads)}
        med = {k: 2 * v for k, v in _median_rates(pulls, cfg["loader_batches"], cfg, torch.device("cpu")).items()}  # 2 patches a batch
        rows.append(Row("7 data pipeline", f"patch {patch}, {len(items)} cached volumes", "samples/s (vs CacheDataset + ThreadDataLoader)",
                        med["medseg"], med["monai"], "1/s", better="higher", target="ratio >= 1.0", met=med["medseg"] >= med["monai"]))
    return rows
