"""H-DenseUNet end to end through the CLI: the bundled phantom recipe (localiser, 2D DenseUNet, hybrid with the
2D part frozen, end-to-end hybrid), shrunk to seconds; the package predicts a non-RAS NIfTI in its own geometry; LiTS scoring."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from medseg.config import bundled_pipeline
from tests.conftest import run_cli


def _tiny_recipe(path: Path) -> Path:
    config = yaml.safe_load(bundled_pipeline("liver_tumor_hdenseunet_phantom").read_text())
    config["data"]["synthetic"].update(n_train=3, n_test=1, seed=2, options={"spacing_xy_mm": [4, 4], "spacing_z_mm": [6, 6]})
    config["data"]["val_fraction"] = 0.0
    config["preprocess"]["target_spacing"] = [6.0, 6.0, 6.0]
    config["train"].update(lr=0.003, epochs=3, iterations_per_epoch=3)
    for stage in config["stages"]:
        train = stage["train"]
        train.update(epochs=3, iterations_per_epoch=3, batch_size=2, samples_per_volume=2 if stage["name"] == "dense2d" else 1)
        train["patch_size"] = {"localiser": [16, 16, 16], "dense2d": [32, 32, 1], "hybrid_3d": [32, 32, 8], "hybrid": [32, 32, 8]}[stage["name"]]
        if stage["name"] == "localiser":
            stage["preprocess"]["target_spacing"] = [10.0, 10.0, 10.0]
            train["epochs"] = 1
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hdenseunet")
    done = run_cli("train", str(_tiny_recipe(root / "recipe.yaml")), "-o", str(root / "run"), "--device", "cpu", "-q")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith(f"model package: {root / 'run' / 'hybrid' / 'model'}")
    return root / "run"


def _losses(run: Path) -> list[float]:
    return [float(r["loss"]) for r in csv.DictReader((run / "metrics.csv").open())]


def test_stages_train_and_lower_the_loss(trained: Path) -> None:
    for stage in ("dense2d", "hybrid_3d", "hybrid"):
        losses = _losses(trained / stage)
        assert len(losses) == 3 and losses[-1] < losses[0], (stage, losses)
    manifest = json.loads((trained / "hybrid_3d" / "model" / "medseg.json").read_text())
    assert manifest["training"]["init_from"]["target"] == "net2d"
    assert manifest["training"]["init_from"]["path"] == str((trained / "dense2d" / "model" / "model.safetensors").resolve())
    manifest = json.loads((trained / "hybrid" / "model" / "medseg.json").read_text())
    assert manifest["training"]["init_from"]["path"] == str((trained / "hybrid_3d" / "model" / "model.safetensors").resolve())
    assert manifest["roi"]["localiser"] == "localiser"
    assert (trained / "hybrid" / "model" / "localiser" / "model.safetensors").is_file()
    assert not (trained / "dense2d" / "data").exists()  # one phantom dataset, shared by the stages


def test_package_predicts_a_non_ras_case_in_its_geometry(trained: Path, tmp_path: Path) -> None:
    image = trained / "data" / "imagesTs" / "liver_003.nii.gz"
    source = nib.load(str(image))
    assert "".join(nib.aff2axcodes(source.affine)) != "RAS"
    out = tmp_path / "mask.nii.gz"
    done = run_cli("predict", "-i", str(image), "-o", str(out), "-m", str(trained / "hybrid" / "model"), "--device", "cpu", "-q")
    assert done.returncode == 0, done.stderr[-2000:]
    written = nib.load(str(out))
    assert written.shape == source.shape
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-5)
    np.testing.assert_allclose(written.header.get_zooms(), source.header.get_zooms(), atol=1e-6)
    assert set(np.unique(np.asarray(written.dataobj))) <= {0, 1, 2}
    scored = run_cli("evaluate", "-i", str(out), "-r", str(trained / "data" / "labelsTs" / "liver_003.nii.gz"),
                     "-o", str(tmp_path / "m.csv"), "--regions", "lits")
    assert scored.returncode == 0 and "label tumour: Dice" in scored.stdout and "(global" in scored.stdout


def test_resume_skips_finished_stages(trained: Path) -> None:
    before = (trained / "hybrid" / "model" / "model.safetensors").stat().st_mtime_ns
    done = run_cli("train", str(trained.parent / "recipe.yaml"), "-o", str(trained), "--resume", "--device", "cpu", "-q")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count("finished") + done.stdout.count("finished") >= 3
    assert (trained / "hybrid" / "model" / "model.safetensors").stat().st_mtime_ns == before
