from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from medseg.config import load_pipeline
from medseg.model.package import load_model_package
from medseg.engine.trainer import Trainer
from medseg.errors import MedsegOutputError
from tests.conftest import write_pipeline


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / "last" / "model.safetensors"))


def test_training_lowers_the_loss_and_writes_everything(tiny_run: Path) -> None:
    rows = list(csv.DictReader((tiny_run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    assert rows[-1]["val_score"] != ""
    for name in ("progress.png", "config.yaml", "checkpoints/best/model.safetensors", "model/medseg.json", "model/model.safetensors"):
        assert (tiny_run / name).is_file(), name
    assert not list(tiny_run.rglob("*.pt")) and not list(tiny_run.rglob("*.pkl"))
    package = load_model_package(tiny_run / "model")
    assert package.manifest.training["epochs"] == 3
    assert package.manifest.labels == {0: "background", 1: "organ", 2: "lesion"}


def test_resume_is_exact(tmp_path: Path) -> None:
    """--epochs 2 in one go == --epochs 1, then --resume --epochs 2 (CPU, deterministic)."""
    config = load_pipeline(write_pipeline(tmp_path / "p.yaml", **{"data.synthetic.n_train": 3}))
    straight, split = tmp_path / "straight", tmp_path / "split"
    Trainer(config, straight, device="cpu", epochs=2, progress=False).fit()
    Trainer(config, split, device="cpu", epochs=1, progress=False).fit()
    first = _weights(split)
    Trainer(config, split, device="cpu", epochs=2, resume=True, progress=False).fit()
    a, b = _weights(straight), _weights(split)
    assert any(not torch.equal(first[k], b[k]) for k in b), "resume did not train"
    for key in a:
        assert torch.equal(a[key], b[key]), key
    rows = list(csv.DictReader((split / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]


def test_run_folder_rules(tmp_path: Path) -> None:
    config = load_pipeline(write_pipeline(tmp_path / "p.yaml"))
    with pytest.raises(MedsegOutputError, match="nothing to resume"):
        Trainer(config, tmp_path / "none", device="cpu", resume=True)
    (tmp_path / "busy" / "checkpoints" / "last").mkdir(parents=True)  # a run with a checkpoint is not replaced silently
    with pytest.raises(MedsegOutputError, match="--resume"):
        Trainer(config, tmp_path / "busy", device="cpu")
