"""Semi-supervised mutual training: unlabelled labels never read, exact resume of two networks, losses fall, export."""

from __future__ import annotations

import copy
import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import medseg.transforms.loading as loading
from medseg.config import apply_overrides, validate_pipeline
from medseg.data.atrium_phantom import make_atrium_dataset
from medseg.engine.logs import RunLog
from medseg.model.package import load_model_package
from medseg.engine.semisup import SemiSupervisedTrainer, rampup_weight
from medseg.engine.semisup_data import semi_cases
from medseg.engine.variants import create_trainer
from medseg.errors import MedsegConfigError
from medseg.inference.predictor import Predictor

#: 20 x 20 x 16 voxel atrium phantoms (4 mm), a 3-level 3D UNet of 4-16 filters: seconds per epoch
TINY_SEMI: dict[str, Any] = {
    "name": "tiny_semi",
    "task": "semi_supervised",
    "seed": 0,
    "deterministic": True,
    "data": {
        "synthetic": {"kind": "atrium_phantom", "n_train": 5, "n_test": 0, "seed": 1},
        "labels": {0: "background", 1: "atrium"},
        "modalities": ["MRI"],
        "val_fraction": 0.2,
    },
    "preprocess": {"intensity": "mri", "target_spacing": [4.0, 4.0, 4.0]},
    "network": {"name": "unet", "kwargs": {"spatial_dims": 3, "in_channels": 1, "out_channels": 2, "filters": [4, 8, 16]}},
    "train": {
        "epochs": 2, "iterations_per_epoch": 2, "batch_size": 1, "samples_per_volume": 1, "patch_size": [16, 16, 16],
        "optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "grad_clip": None, "amp": False,
    },
    "inference": {"overlap": 0.0, "sw_batch_size": 1},
    "semi_supervised": {"labelled": 1, "perturbation": "dsaif", "views": {"prob": 1.0}, "dsaif": {"min_area": 5}, "rampup": {"iterations": 4, "step": 1}},
}


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    """Tiny networks run faster on one thread, and much faster on a busy shared CI machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_semi(**overrides: Any) -> dict[str, Any]:
    config = copy.deepcopy(TINY_SEMI)
    apply_overrides(config, overrides)
    return config


def _trainer(raw: dict[str, Any], run: Path, **kwargs: Any) -> SemiSupervisedTrainer:
    trainer = create_trainer(validate_pipeline(raw), run, device="cpu", progress=False, **kwargs)
    assert isinstance(trainer, SemiSupervisedTrainer)
    return trainer


def test_unlabelled_labels_are_never_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cases without labels, cases made unlabelled by ``labelled`` and a ``data.unlabelled`` folder whose
    label files would raise if touched: training, validation and export never read one of them."""
    data = tmp_path / "data"
    make_atrium_dataset(data, n_train=5, n_test=0, seed=2, unlabelled=1)  # one case listed without a label
    extra = tmp_path / "extra"
    make_atrium_dataset(extra, n_train=2, n_test=0, seed=3)
    for f in (extra / "imagesTr").iterdir():
        f.rename(f.with_name(f.name.replace("atrium_", "extra_")))
    for f in (extra / "labelsTr").iterdir():  # poisoned: not an image at all
        f.with_name(f.name.replace("atrium_", "extra_")).write_bytes(b"touching this label is a bug")
        f.unlink()
    (extra / "dataset.json").unlink()  # read as an imagesTr/labelsTr folder pair
    raw = tiny_semi(**{"data.synthetic": None, "data.dataset": str(data), "data.unlabelled": str(extra), "train.epochs": 1})
    config = validate_pipeline(raw)
    train, unlabelled, val = semi_cases(config, tmp_path / "run")
    assert len(train) == 1 and len(val) == 1 and len(unlabelled) == 5  # 1 listed + 2 moved by `labelled` + 2 extra
    assert all("label" not in c for c in unlabelled)
    all_labels = {str(p) for p in (data / "labelsTr").iterdir()} | {str(p) for p in (extra / "labelsTr").iterdir()}
    allowed = {c["label"] for c in train + val}
    forbidden = all_labels - allowed
    assert len(forbidden) == 4

    read: list[str] = []
    real_read_image = loading.read_image

    def guarded(path: Any, kind: str = "image", **kwargs: Any) -> Any:
        read.append(str(path))
        if str(path) in forbidden:
            raise AssertionError(f"read the label of an unlabelled case: {path}")
        return real_read_image(path, kind, **kwargs)

    monkeypatch.setattr(loading, "read_image", guarded)
    summary = _trainer(raw, tmp_path / "run").fit()
    assert summary["epochs"] == 1
    assert not set(read) & forbidden
    assert set(read) & allowed == allowed  # the labelled ones were read (the guard saw the traffic)
    assert any("extra_" in p for p in read)  # and the unlabelled images too


class _Killed(Exception):
    pass


def test_resume_is_exact_with_two_networks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run killed in epoch 2 and resumed == the run straight through: both networks, the iteration
    count (ramp-up, per-iteration learning rate) and the per-network bests."""
    raw = tiny_semi()
    straight, split = tmp_path / "straight", tmp_path / "split"
    _trainer(raw, straight).fit()
    append = RunLog.append

    def killed_in_epoch_2(self: RunLog, row: dict[str, Any]) -> None:
        if row["epoch"] == 2:
            raise _Killed
        append(self, row)

    with monkeypatch.context() as m:
        m.setattr(RunLog, "append", killed_in_epoch_2)
        with pytest.raises(_Killed):
            _trainer(raw, split).fit()
    first = load_file(str(split / "checkpoints" / "last" / "net2.safetensors"))
    _trainer(raw, split, resume=True).fit()
    for name in ("net1", "net2"):
        a = load_file(str(straight / "checkpoints" / "last" / f"{name}.safetensors"))
        b = load_file(str(split / "checkpoints" / "last" / f"{name}.safetensors"))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    assert any(not torch.equal(first[k], b[k]) for k in b), "resume did not train"
    a_state = json.loads((straight / "checkpoints" / "last" / "state.json").read_text())
    b_state = json.loads((split / "checkpoints" / "last" / "state.json").read_text())
    assert a_state["__dict__"]["iteration"] == b_state["__dict__"]["iteration"] == 4
    assert a_state["__dict__"]["best_per_network"] == b_state["__dict__"]["best_per_network"]
    rows_a = list(csv.DictReader((straight / "metrics.csv").open()))
    rows_b = list(csv.DictReader((split / "metrics.csv").open()))
    assert [r["loss"] for r in rows_a] == [r["loss"] for r in rows_b]
    for name in ("net1", "net2"):
        assert (straight / "checkpoints" / f"best_{name}" / f"{name}.safetensors").is_file()
    manifest = load_model_package(straight / "model").manifest
    info = manifest.training["semi_supervised"]
    assert info["exported"] in ("net1", "net2") and info["iterations"] == 4
    assert manifest.network.name == "unet"


def test_short_run_lowers_supervised_and_unsupervised_losses(tmp_path: Path) -> None:
    """A 2D (slice-wise) run: epoch means of both loss terms fall; the ensemble package predicts."""
    raw = tiny_semi(**{
        "network.slice_axis": 2,
        "network.kwargs": {"spatial_dims": 2, "in_channels": 1, "out_channels": 2, "filters": [8, 16, 32]},
        "train.patch_size": [16, 16, 1],
        "train.batch_size": 4,
        "train.samples_per_volume": 4,
        "train.epochs": 6,
        "train.iterations_per_epoch": 6,
        "train.val_every": 6,
        "train.optimizer": "adam",
        "train.lr": 0.01,
        "semi_supervised.rampup": {"shape": "constant"},
        "semi_supervised.export": "ensemble",
    })
    summary = _trainer(raw, tmp_path / "run").fit()
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    sup = [float(r["loss_sup"]) for r in rows]
    unsup = [float(r["loss_unsup"]) for r in rows]
    assert sup[-1] < sup[0] and unsup[-1] < unsup[0], (sup, unsup)
    package = load_model_package(Path(summary["model"]))
    assert package.manifest.network.name == "ensemble"
    assert [m["slice_axis"] for m in package.manifest.network.kwargs["members"]] == [2, 2]
    image = next((tmp_path / "run" / "data" / "imagesTr").iterdir())
    result = Predictor(package, torch.device("cpu")).predict_files([image])
    assert result.labels.shape == result.geometry.shape and set(np.unique(result.labels)) <= {0, 1}


def test_labelled_cases_by_name_and_by_fraction(tmp_path: Path) -> None:
    config = validate_pipeline(tiny_semi(**{"semi_supervised.labelled": ["atrium_003"], "data.val_cases": ["atrium_000"]}))
    train, unlabelled, val = semi_cases(config, tmp_path / "run")
    assert [c["case"] for c in train] == ["atrium_003"] and [c["case"] for c in val] == ["atrium_000"]
    assert sorted(c["case"] for c in unlabelled) == ["atrium_001", "atrium_002", "atrium_004"]
    config = validate_pipeline(tiny_semi(**{"semi_supervised.labelled": 0.5}))
    train, unlabelled, _ = semi_cases(config, tmp_path / "run")
    assert (len(train), len(unlabelled)) == (2, 2)
    with pytest.raises(MedsegConfigError, match="atrium_000 not among"):
        semi_cases(validate_pipeline(tiny_semi(**{"semi_supervised.labelled": ["atrium_000"], "data.val_cases": ["atrium_000"]})), tmp_path / "run")


def test_labelled_only_baseline_loads_no_unlabelled_data(tmp_path: Path) -> None:
    raw = tiny_semi(**{"semi_supervised.perturbation": "none", "train.epochs": 1, "train.iterations_per_epoch": 1})
    trainer = _trainer(raw, tmp_path / "run")
    trainer.fit()
    assert trainer.train_ds.unlabelled is None
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert "loss_unsup" not in rows[0]


def test_rampup_matches_the_dsaif_code() -> None:
    for t in (0, 149, 150, 2999, 3000, 5999, 6000, 15000):
        expected = float(np.exp(-5.0 * (1.0 - np.clip(t // 150, 0, 40) / 40) ** 2))
        assert rampup_weight(t) == pytest.approx(expected)
    assert rampup_weight(50, "linear", 100, 1) == 0.5
    assert rampup_weight(0, "constant") == 1.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"semi_supervised.labelled": 5}, "asks for 5 labelled"),
        ({"semi_supervised.labelled": None}, "no unlabelled case"),
        ({"train.patch_size": [16, 16, 8]}, "equal patch sizes"),
    ],
)
def test_configuration_errors(tmp_path: Path, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(MedsegConfigError, match=message):
        _trainer(tiny_semi(**overrides), tmp_path / "run").setup()


def test_schema_rejects_bad_fractions() -> None:
    with pytest.raises(MedsegConfigError, match="semi_supervised.labelled"):
        validate_pipeline(tiny_semi(**{"semi_supervised.labelled": 1.5}))
    with pytest.raises(MedsegConfigError, match="perturbation"):
        validate_pipeline(tiny_semi(**{"semi_supervised.perturbation": "mixup"}))
    with pytest.raises(MedsegConfigError, match="need task: semi_supervised"):
        validate_pipeline(tiny_semi(task="segmentation"))


def test_copying_a_run_folder_keeps_resume_working(tmp_path: Path) -> None:
    """Checkpoint folders are self-contained (weights + JSON/safetensors state): a moved run resumes."""
    raw = tiny_semi(**{"train.epochs": 1, "train.iterations_per_epoch": 1, "data.val_fraction": 0.0})
    _trainer(raw, tmp_path / "a").fit()
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    summary = _trainer(raw, tmp_path / "b", epochs=2, resume=True).fit()
    assert summary["epochs"] == 2
    # without validation, `better` falls back to network 1's last weights
    assert load_model_package(tmp_path / "b" / "model").manifest.training["semi_supervised"]["exported"] == "net1"
