"""IVD-Net end to end: train on the Dixon spine phantom, then through the CLI predict from four NIfTI files and
evaluate; modality-order and geometry errors are one clean line naming the file."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml

from medseg.config import bundled_pipeline, load_pipeline
from medseg.data.layouts import load_decathlon
from medseg.model.package import load_model_package
from medseg.engine.variants import create_trainer
from medseg.inference.ablation import ModalityDropPredictor, contribution_table, modality_contributions
from medseg.io.image_io import read_geometry
from tests.conftest import run_cli

#: The bundled CPU pipeline shrunk to seconds: 3 discs, 6 x 3 x 3 mm voxels, depth 2, width 2.
TINY_OVERRIDES = {
    "data": {
        "synthetic": {
            "kind": "spine_dixon", "n_train": 4, "n_test": 2, "seed": 1,
            "options": {"n_discs": 3, "field_of_view_mm": [24, 48, 96], "vertebra_height_mm": [12, 14], "disc_height_mm": [6, 8]},
        },
        "val_fraction": 0.25,
    },
    "preprocess": {"target_spacing": [6.0, 3.0, 3.0]},
    "network": {"kwargs": {"spatial_dims": 2, "n_modalities": 4, "n_classes": 2, "base_width": 2, "depth": 2}},
    "train": {"epochs": 4, "iterations_per_epoch": 5, "patch_size": [1, 16, 32], "lr": 0.01, "val_every": 2},
}


def _tiny_yaml(path: Path) -> Path:
    config = yaml.safe_load(bundled_pipeline("ivd_ivdnet_phantom").read_text())
    for section, values in TINY_OVERRIDES.items():
        config[section].update(values)
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """IVD-Net's many small convolutions gain nothing from a second thread at these sizes, and lose a lot
    on a busy machine: this module runs torch on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ivd_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny pipeline trained once, in process (what ``medseg train`` runs)."""
    root = tmp_path_factory.mktemp("ivd")
    create_trainer(load_pipeline(_tiny_yaml(root / "ivd.yaml")), root / "run", device="cpu", progress=False).fit()
    return root / "run"


@pytest.fixture(scope="module")
def test_case(ivd_run: Path) -> dict:
    """A held-out case stored in a non-RAS orientation (the phantom cycles RAS, PIL, LPS, ASR)."""
    cases = load_decathlon(ivd_run / "data" / "dataset.json", section="medseg_test_labels")
    case = next(c for c in cases if read_geometry(c["image"][0]).orientation != "RAS")
    return case


def _clean_error(result, *needles: str) -> str:
    assert result.returncode != 0, result.stdout
    errors = [l for l in result.stderr.splitlines() if l.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def test_short_training_lowers_the_loss(ivd_run: Path) -> None:
    rows = list(csv.DictReader((ivd_run / "metrics.csv").open()))
    losses = [float(r["loss"]) for r in rows]
    assert len(losses) == 4
    assert losses[-1] < losses[0] * 0.8
    manifest = json.loads((ivd_run / "model" / "medseg.json").read_text())
    assert manifest["modalities"] == ["fat", "inn", "opp", "wat"]
    assert manifest["network"]["name"] == "ivdnet" and manifest["network"]["slice_axis"] == 0
    assert manifest["preprocess"]["intensity"] == "minmax"
    assert all(not name.endswith(("_fat", "_inn")) for name in manifest["training"]["train_cases"])


def test_predict_four_modalities_keeps_geometry_and_evaluates(ivd_run: Path, test_case: dict, tmp_path: Path) -> None:
    out, probs = tmp_path / "disc.nii.gz", tmp_path / "probs.nii.gz"
    args = ["predict", *sum((["-i", p] for p in test_case["image"]), []), "-o", str(out), "-m", str(ivd_run / "model")]
    result = run_cli(*args, "--probabilities", str(probs), "--device", "cpu", "-q")
    assert result.returncode == 0, result.stderr
    reference = nib.load(test_case["image"][0])
    written = nib.load(str(out))
    assert written.shape == reference.shape
    np.testing.assert_allclose(written.affine, reference.affine, atol=1e-5)
    assert nib.aff2axcodes(written.affine) == nib.aff2axcodes(reference.affine) != ("R", "A", "S")
    assert set(np.unique(np.asarray(written.dataobj))) <= {0, 1}

    # the same case named explicitly in another order gives the same probabilities
    shuffled = [test_case["image"][i] for i in (3, 0, 2, 1)]
    out2, probs2 = tmp_path / "disc2.nii.gz", tmp_path / "probs2.nii.gz"
    args2 = ["predict", *sum((["-i", p] for p in shuffled), []), "--modalities", "water,fat,opp,inn", "--probabilities", str(probs2)]
    result = run_cli(*args2, "-o", str(out2), "-m", str(ivd_run / "model"), "--device", "cpu", "-q")
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(np.asarray(nib.load(str(probs2)).dataobj), np.asarray(nib.load(str(probs)).dataobj), atol=1e-6)

    metrics = tmp_path / "metrics.csv"
    result = run_cli("evaluate", "-i", str(out), "-r", test_case["label"], "-o", str(metrics))
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(metrics.open()))
    assert any(r["case"] == test_case["case"] and r["label"] == "1" for r in rows)


def test_wrong_modality_order_is_one_error_naming_the_file(ivd_run: Path, test_case: dict, tmp_path: Path) -> None:
    fat, inn, opp, wat = test_case["image"]
    out = tmp_path / "disc.nii.gz"
    result = run_cli("predict", "-i", fat, "-i", wat, "-i", opp, "-i", inn, "-o", str(out), "-m", str(ivd_run / "model"), "-q")
    _clean_error(result, Path(wat).name, "'wat'", "'inn'", "fat, inn, opp, wat", "--modalities")
    result = run_cli("predict", "-i", fat, "-i", inn, "-i", opp, "-o", str(out), "-m", str(ivd_run / "model"), "-q")
    _clean_error(result, "got 3 image(s)", "fat, inn, opp, wat")
    result = run_cli("predict", "-i", fat, "-i", inn, "-i", opp, "-i", wat, "--modalities", "fat,inn,opp,t2", "-o", str(out), "-m", str(ivd_run / "model"), "-q")
    _clean_error(result, "'t2' is not one of the model's modalities")
    assert not out.exists()


def test_geometry_mismatch_names_the_modality(ivd_run: Path, test_case: dict, tmp_path: Path) -> None:
    files = [Path(shutil.copy(p, tmp_path / Path(p).name)) for p in test_case["image"]]
    opp = nib.load(str(files[2]))
    shifted = opp.affine.copy()
    shifted[:3, 3] += 2.0
    nib.save(nib.Nifti1Image(np.asarray(opp.dataobj), shifted), str(files[2]))
    out = tmp_path / "disc.nii.gz"
    result = run_cli("predict", *sum((["-i", str(f)] for f in files), []), "-o", str(out), "-m", str(ivd_run / "model"), "-q")
    _clean_error(result, files[2].name, "modality 'opp'", "geometry")
    assert not out.exists()


def test_dropping_a_modality_at_inference(ivd_run: Path, test_case: dict) -> None:
    package = load_model_package(ivd_run / "model")
    predictor = ModalityDropPredictor(package, torch.device("cpu"))
    image, geometry = predictor.load(test_case["image"])
    full = predictor.predict_image(image, geometry, keep_probabilities=True).probabilities
    predictor.drop = 3
    assert torch.count_nonzero(predictor.preprocess(image)[3]) == 0
    assert torch.count_nonzero(predictor.preprocess(image)[2]) > 0
    dropped = predictor.predict_image(image, geometry, keep_probabilities=True).probabilities
    assert not np.allclose(full, dropped)
    table = contribution_table(modality_contributions(package, [test_case]))
    assert [r["dropped"] for r in table] == ["none", "fat", "inn", "opp", "wat"]
    assert table[0]["change"] == 0.0 and all(0.0 <= r["dice"] <= 1.0 for r in table)


def test_predict_a_folder_of_modality_named_files(ivd_run: Path, tmp_path: Path) -> None:
    folder = ivd_run / "data" / "imagesTs"  # spine_004_fat.nii.gz ... spine_005_wat.nii.gz
    result = run_cli("predict", "-i", str(folder), "-o", str(tmp_path / "out"), "-m", str(ivd_run / "model"), "--device", "cpu", "-q")
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in (tmp_path / "out").glob("*.nii.gz") if ".entropy." not in p.name)
    assert written == ["spine_004.nii.gz", "spine_005.nii.gz"]
    rows = list(csv.DictReader((tmp_path / "out" / "summary.csv").open()))
    assert [(r["case"], r["status"]) for r in rows] == [("spine_004", "ok"), ("spine_005", "ok")]
    for name in written:
        source = nib.load(str(folder / name.replace(".nii.gz", "_opp.nii.gz")))
        np.testing.assert_allclose(nib.load(str(tmp_path / "out" / name)).affine, source.affine, atol=1e-5)
