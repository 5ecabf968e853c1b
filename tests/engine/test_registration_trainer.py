"""The registration trainer variant: pairs through the shared loop, exact resume, a displacement package."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from medseg.config import apply_overrides, validate_pipeline
from medseg.data.mni152 import DeformationSpec, load_mni152, write_pairs
from medseg.model.package import load_model_package
from medseg.engine.registration import PairDataset, RegistrationTrainer, size_divisor
from medseg.engine.variants import create_trainer
from medseg.errors import MedsegConfigError, MedsegModelError
from medseg.losses import create_loss, list_losses
from medseg.networks import create_network

TINY_MICDIR = {
    "spatial_dims": 3, "encoder_channels": [4, 8, 8, 8], "decoder_channels": [8, 8, 8], "head_channels": [4],
    "half_head_channels": [4], "node_grid": 2, "latent_channels": 3, "gcn_channels": [4, 3], "integration_steps": 2,
}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pairs")
    template = load_mni152(6, shape=(32, 32, 32))
    return write_pairs(root / "pairs", 3, seed=0, template=template, n_test=1, deformation=DeformationSpec(20.0, 20.0))


def _config(pairs: Path, **overrides: object) -> dict:
    config = {
        "name": "tiny_registration", "task": "registration", "seed": 0, "deterministic": True,
        "data": {"dataset": str(pairs), "labels": {0: "background", 1: "csf_other", 2: "grey_matter", 3: "white_matter"},
                 "modalities": ["MRI"], "val_fraction": 0.3},
        "preprocess": {"intensity": "minmax", "target_spacing": [6.0, 6.0, 6.0]},
        "network": {"name": "micdir", "kwargs": dict(TINY_MICDIR)},
        "loss": {"name": "micdir", "kwargs": {"inverse_consistency_weight": 0.5}},
        "train": {"epochs": 2, "iterations_per_epoch": 2, "batch_size": 1, "samples_per_volume": 1, "patch_size": [24, 24, 24],
                  "optimizer": "adam", "lr": 0.003, "weight_decay": 0.0, "augment": {"flip": 0.5}},
    }
    apply_overrides(config, overrides)
    return config


def test_losses_are_registered_by_name() -> None:
    assert {"micdir", "voxelmorph", "registration"} <= set(list_losses())
    loss = create_loss("voxelmorph", spatial_dims=2)
    assert loss.weights["graph"] == 0 and loss.regularize == "velocity"


def test_training_logs_the_terms_validates_by_warped_dice_and_exports_a_displacement_package(pairs: Path, tmp_path: Path) -> None:
    trainer = create_trainer(validate_pipeline(_config(pairs)), tmp_path / "run", device="cpu", progress=False)
    assert isinstance(trainer, RegistrationTrainer)
    summary = trainer.fit()
    assert summary["epochs"] == 2
    lines = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    for column in ("loss_similarity", "loss_graph", "loss_similarity_half", "loss_inverse_consistency", "val_dice_grey_matter",
                   "val_dice_identity", "val_folding", "val_score"):
        assert column in header
    package = load_model_package(tmp_path / "run" / "model")
    manifest = package.manifest
    assert manifest.output.kind == "displacement" and manifest.network.name == "micdir"
    assert len(manifest.training["val_cases"]) == 1 and len(manifest.training["train_cases"]) == 2
    assert manifest.preprocess.intensity == "minmax"
    with pytest.raises(MedsegModelError, match="medseg register"):
        package.head.probabilities(torch.zeros(1, 3, 4, 4, 4))


def test_resume_is_exact(pairs: Path, tmp_path: Path) -> None:
    config = validate_pipeline(_config(pairs, **{"data.val_fraction": 0.0}))
    RegistrationTrainer(config, tmp_path / "a", device="cpu", progress=False).fit()
    RegistrationTrainer(config, tmp_path / "b", device="cpu", progress=False, epochs=1).fit()
    RegistrationTrainer(config, tmp_path / "b", device="cpu", progress=False, resume=True, epochs=2).fit()
    a = load_file(str(tmp_path / "a" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "model" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_pair_dataset_puts_the_pair_on_one_padded_grid(pairs: Path) -> None:
    config = validate_pipeline(_config(pairs, **{"network.name": "voxelmorph", "network.kwargs": {"encoder_channels": [4, 8, 8]},
                                                 "train.patch_size": [16, 16, 16]}))
    from medseg.data.pairs import discover_pairs

    divisor = size_divisor(create_network("voxelmorph", encoder_channels=[4, 8, 8]))
    assert divisor == (8, 8, 8)
    entries = discover_pairs(pairs).train
    training = PairDataset(entries, config, divisor, training=True)[0]
    assert training["fixed"].shape == training["moving"].shape == (1, 16, 16, 16) and "fixed_labels" not in training
    item = PairDataset(entries, config, divisor, training=False)[0]
    assert item["fixed"].shape == (1, 32, 32, 32) and item["moving_labels"].shape == (1, 32, 32, 32)
    assert item["spacing"] == pytest.approx([6.0, 6.0, 6.0])
    labels = item["moving_labels"].unique().tolist()
    assert labels == [0.0, 1.0, 2.0, 3.0]
    fixed = json.loads(pairs.read_text())["pairs"][0]
    assert fixed["name"] == "pair_000" and float(item["fixed"].max()) == pytest.approx(1.0)


def test_configuration_problems_are_one_line_errors(pairs: Path, tmp_path: Path) -> None:
    with pytest.raises(MedsegConfigError, match="multiples of the network's stride"):
        RegistrationTrainer(validate_pipeline(_config(pairs, **{"train.patch_size": [20, 24, 24]})), tmp_path / "a", device="cpu", progress=False).fit()
    with pytest.raises(MedsegConfigError, match="output.kind"):
        RegistrationTrainer(validate_pipeline(_config(pairs, output={"kind": "nested"})), tmp_path / "b", device="cpu")
    with pytest.raises(MedsegConfigError, match="loss"):
        RegistrationTrainer(validate_pipeline(_config(pairs, **{"loss.kwargs": {"similarity": "nope"}})), tmp_path / "c", device="cpu", progress=False).fit()
