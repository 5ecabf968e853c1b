"""Cross-validation and fold ensembles on the demo phantoms: two folds, one epoch each, through the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from medseg.engine.folds import fold_splits, kfold_splits
from medseg.errors import MedsegConfigError
from tests.conftest import run_cli, write_pipeline


def test_kfold_splits_are_deterministic_disjoint_and_complete() -> None:
    names = [f"case_{i:02d}" for i in range(11)]
    folds = kfold_splits(names, 5, seed=0)
    assert folds == kfold_splits(list(reversed(names)), 5, seed=0)
    assert folds != kfold_splits(names, 5, seed=1)
    vals = [n for f in folds for n in f["val"]]
    assert sorted(vals) == names  # every case validated exactly once
    for f in folds:
        assert not set(f["val"]) & set(f["train"]) and sorted(f["val"] + f["train"]) == names
    with pytest.raises(MedsegConfigError, match="only 3 labelled"):
        kfold_splits(names[:3], 5, 0)


def test_a_users_splits_json_is_honoured(tmp_path: Path) -> None:
    names = ["a", "b", "c", "d"]
    mine = [{"train": ["a", "b", "c"], "val": ["d"]}, {"train": ["b", "c", "d"], "val": ["a"]}]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "splits.json").write_text(json.dumps(mine))
    run = tmp_path / "run"
    run.mkdir()
    assert fold_splits(run, tmp_path / "data", names, 2, seed=0) == mine
    assert json.loads((run / "splits.json").read_text()) == mine  # written into the run once
    with pytest.raises(MedsegConfigError, match="has 2 folds"):
        fold_splits(run, tmp_path / "data", names, 5, seed=0)


def test_two_folds_then_ensemble_then_predict(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path / "tiny.yaml", **{"train.epochs": 1, "data.synthetic.n_train": 4, "train.samples_per_volume": 1})
    run = tmp_path / "run"
    trained = run_cli("train", str(pipeline), "-o", str(run), "--folds", "2", "-q", "--device", "cpu")
    assert trained.returncode == 0, trained.stderr
    splits = json.loads((run / "splits.json").read_text())
    assert len(splits) == 2 and sorted(splits[0]["val"] + splits[1]["val"]) == sorted(splits[0]["val"] + splits[0]["train"])
    for k in range(2):
        manifest = json.loads((run / f"fold_{k}" / "model" / "medseg.json").read_text())
        assert sorted(manifest["training"]["val_cases"]) == sorted(splits[k]["val"])  # the fold validated on its own cases
    with open(run / "cv_summary.csv") as fh:
        rows = list(csv.DictReader(fh))
    per_case = [r for r in rows if r["model"].startswith("fold_")]
    assert {r["case"] for r in per_case} == set(splits[0]["val"] + splits[1]["val"])  # every case, out of fold
    assert {(r["case"], r["label"]) for r in per_case} == {(c, lab) for c in splits[0]["val"] + splits[1]["val"] for lab in ("1", "2")}
    for r in per_case:
        assert r["model"] == f"fold_{r['fold']}" and r["case"] in splits[int(r["fold"])]["val"]
    means = {r["label"]: float(r["dice"]) for r in rows if r["model"] == "folds" and r["case"] == "mean"}
    assert means["1"] == pytest.approx(sum(float(r["dice"]) for r in per_case if r["label"] == "1") / len(splits[0]["val"] + splits[1]["val"]), abs=1e-3)
    assert {r["case"] for r in rows if r["model"] == "folds"} == {"mean", "sd"}
    assert len(list((run / "oof").glob("*.nii.gz"))) == 4

    ens = tmp_path / "model_ens"
    built = run_cli("ensemble", str(run), "-o", str(ens), "--device", "cpu")
    assert built.returncode == 0, built.stderr
    manifest = json.loads((ens / "medseg.json").read_text())
    assert manifest["network"]["name"] == "ensemble" and len(manifest["network"]["kwargs"]["members"]) == 2
    summary = json.loads((run / "cv_summary.json").read_text())["ensemble"]
    assert "k-1 of the ensemble's k members trained on each" in summary["out_of_fold"]["compared_on"]
    assert summary["out_of_fold"]["ensemble_better"] == (summary["out_of_fold"]["ensemble_dice"] > summary["out_of_fold"]["mean_fold_dice"])
    assert "held_out" in summary  # the phantom's labelled test case: a fair comparison

    test_image = next((run / "data" / "imagesTs").glob("*.nii.gz"))
    out = tmp_path / "pred.nii.gz"
    predicted = run_cli("predict", "-m", str(ens), "-i", str(test_image), "-o", str(out), "--device", "cpu")
    assert predicted.returncode == 0, predicted.stderr
    import nibabel as nib

    assert nib.load(out).shape == nib.load(test_image).shape
    assert (nib.load(out).affine == nib.load(test_image).affine).all()
