"""The CLI as a user drives it: train -> predict (file and folder) -> evaluate -> check -> info."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np

from medseg.data.synthetic import save_nifti
from tests.conftest import run_cli, write_pipeline


def test_train_cli_writes_a_package(tmp_path: Path) -> None:
    config = write_pipeline(tmp_path / "p.yaml", **{"data.synthetic.n_train": 3})
    result = run_cli("train", str(config), "-o", str(tmp_path / "run"), "--epochs", "1", "--device", "cpu", "-q")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run" / "model" / "medseg.json").is_file()
    assert "model package" in result.stdout
    again = run_cli("train", str(config), "-o", str(tmp_path / "run"), "--epochs", "1", "-q")
    assert again.returncode != 0 and "--resume" in again.stderr
    extended = run_cli("train", str(config), "-o", str(tmp_path / "run"), "--epochs", "2", "--resume", "-q")
    assert extended.returncode == 0, extended.stderr
    assert json.loads((tmp_path / "run" / "model" / "medseg.json").read_text())["training"]["epochs"] == 2


def test_predict_file_with_extras_then_evaluate(tmp_path: Path, tiny_run: Path, tiny_model: Path) -> None:
    image = next((tiny_run / "data" / "imagesTs").glob("*.nii.gz"))
    label = tiny_run / "data" / "labelsTs" / image.name
    out = tmp_path / "pred.nii.gz"
    result = run_cli(
        "predict", "-i", str(image), "-o", str(out), "-m", str(tiny_model), "--device", "auto", "--tta",
        "--probabilities", str(tmp_path / "p.nii.gz"), "--preview", str(tmp_path / "p.png"), "--stats", str(tmp_path / "s.json"),
    )
    assert result.returncode == 0, result.stderr
    assert "running on CPU" in result.stderr  # --device auto says what it chose
    src, pred = nib.load(str(image)), nib.load(str(out))
    assert pred.shape == src.shape and np.allclose(pred.affine, src.affine, atol=1e-5)
    assert nib.load(str(tmp_path / "p.nii.gz")).shape == (*src.shape, 3)
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stats = json.loads((tmp_path / "s.json").read_text())
    labels = np.asarray(pred.dataobj)
    assert stats["labels"]["1"]["voxels"] == int((labels == 1).sum())

    csv_path = tmp_path / "m.csv"
    result = run_cli("evaluate", "-i", str(out), "-r", str(label), "-o", str(csv_path), "--labels", "1,2")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["case"] for r in rows[:2]] == [label.name.replace(".nii.gz", "")] * 2
    assert {r["case"] for r in rows[2:]} == {"mean", "std", "global"}
    from medseg.metrics import dice

    expected = dice(labels, np.asarray(nib.load(str(label)).dataobj), [1])[1]
    assert abs(float(rows[0]["dice"]) - expected) < 1e-9


def test_predict_folder_mode_skips_existing_and_reports_bad_cases(tmp_path: Path, tiny_run: Path, tiny_model: Path) -> None:
    cases = tmp_path / "cases"
    cases.mkdir()
    for src in sorted((tiny_run / "data" / "imagesTr").glob("*.nii.gz"))[:2]:
        shutil.copy(src, cases / src.name)
    (cases / "broken.nii.gz").write_text("not an image")
    out = tmp_path / "out"
    result = run_cli("predict", "-i", str(cases), "-o", str(out), "-m", str(tiny_model), "-q")
    assert result.returncode == 1
    assert "broken.nii.gz" in result.stderr
    written = sorted(p.name for p in out.iterdir() if p.name.endswith(".nii.gz"))  # + reports, previews, summary.csv
    assert written == sorted(p.name for p in cases.iterdir() if p.name != "broken.nii.gz")
    assert not any(p.name.startswith("broken") for p in out.iterdir()) and (out / "summary.csv").is_file()
    (cases / "broken.nii.gz").unlink()
    again = run_cli("predict", "-i", str(cases), "-o", str(out), "-m", str(tiny_model), "-q")
    assert again.returncode == 0
    assert sum(line.startswith("skip ") for line in again.stderr.splitlines()) == 2


def test_check_reports_each_problem_with_a_fix(tmp_path: Path) -> None:
    good_affine = np.diag([1.0, 1.0, 2.0, 1.0])
    image = save_nifti(tmp_path / "img.nii.gz", np.random.default_rng(0).normal(size=(10, 10, 6)).astype(np.float32), good_affine)
    label = save_nifti(tmp_path / "lab.nii.gz", np.full((10, 10, 6), 3, np.uint8), np.diag([1.0, 1.0, 2.5, 1.0]))
    sheared = good_affine.copy()
    sheared[0, 1] = 0.5
    shear = save_nifti(tmp_path / "shear.nii.gz", np.ones((4, 4, 4), np.float32), sheared)
    nan = np.ones((4, 4, 4), np.float32)
    nan[0, 0, 0] = np.nan
    nan_path = save_nifti(tmp_path / "nan.nii.gz", nan, np.eye(4))
    thick = save_nifti(tmp_path / "thick.nii.gz", np.ones((4, 4, 4), np.float32), np.diag([0.5, 0.5, 30.0, 1.0]))
    four_d = save_nifti(tmp_path / "4d.nii.gz", np.ones((4, 4, 4, 2), np.float32), np.eye(4))
    result = run_cli("check", str(image), "--label-map", str(label), "--labels", "0,1,2")
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert any("label values [3]" in l and "fix:" in l for l in lines)
    assert any("geometry differs" in l for l in lines)
    result = run_cli("check", str(shear), str(nan_path), str(thick), str(four_d))
    text = result.stdout
    assert result.returncode == 1
    assert "not orthonormal" in text and "NaN" in text and "extreme voxel size" in text and "4D" in text
    assert all("fix:" in l for l in text.strip().splitlines())
    assert run_cli("check", str(image)).returncode == 0


def test_check_dataset_folder(tiny_run: Path) -> None:
    result = run_cli("check", str(tiny_run / "data"), "--labels", "0,1,2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no problems" in result.stdout


def test_info(tmp_path: Path) -> None:
    path = save_nifti(tmp_path / "a.nii.gz", np.arange(60, dtype=np.float32).reshape(3, 4, 5), np.diag([-0.7, -0.7, 3.0, 1.0]))
    result = run_cli("info", str(path), "--json")
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["shape"] == [3, 4, 5] and facts["orientation"] == "LPS"
    assert facts["spacing_mm"] == [0.7, 0.7, 3.0] and facts["min"] == 0 and facts["max"] == 59
    assert "orientation: LPS" in run_cli("info", str(path)).stdout
