"""Every bad input: exit code non-zero, one line ``error: ...`` naming the file, no traceback, no output."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from safetensors.torch import save_file
import torch

from tests.conftest import run_cli, write_pipeline


def _nifti(path: Path, array: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(array, np.eye(4)), str(path))
    return path


def _bad_image(kind: str, folder: Path) -> Path:
    if kind == "missing":
        return folder / "missing.nii.gz"
    if kind == "empty":
        (folder / "empty.nii.gz").write_bytes(b"")
        return folder / "empty.nii.gz"
    if kind == "truncated":
        good = _nifti(folder / "good.nii.gz", np.random.default_rng(0).normal(size=(24, 24, 24)).astype(np.float32))
        data = good.read_bytes()
        (folder / "truncated.nii.gz").write_bytes(data[: len(data) // 2])
        return folder / "truncated.nii.gz"
    if kind == "text":
        (folder / "text.nii.gz").write_text("this is not an image\n")
        return folder / "text.nii.gz"
    if kind == "2d":
        return _nifti(folder / "flat.nii.gz", np.zeros((16, 16), np.float32))
    if kind == "5d":
        return _nifti(folder / "five.nii.gz", np.zeros((8, 8, 8, 2, 2), np.float32))
    if kind == "nan":
        return _nifti(folder / "nan.nii.gz", np.full((8, 8, 8), np.nan, np.float32))
    if kind == "inf":
        return _nifti(folder / "inf.nii.gz", np.full((8, 8, 8), np.inf, np.float32))
    if kind == "zero_dim":
        return _nifti(folder / "zero.nii.gz", np.zeros((8, 0, 8), np.float32))
    raise AssertionError(kind)


def _assert_clean_error(result, *needles: str) -> None:
    assert result.returncode != 0, result.stdout
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


@pytest.mark.parametrize("kind", ["missing", "empty", "truncated", "text", "2d", "5d", "nan", "inf", "zero_dim"])
def test_predict_bad_image(tmp_path: Path, tiny_model: Path, kind: str) -> None:
    image = _bad_image(kind, tmp_path)
    out = tmp_path / "out" / "mask.nii.gz"
    result = run_cli("predict", "-i", str(image), "-o", str(out), "-m", str(tiny_model), "--device", "cpu", "-q")
    _assert_clean_error(result, image.name)
    assert not out.exists()
    assert not [p for p in (tmp_path / "out").glob("*")] if (tmp_path / "out").exists() else True


@pytest.mark.parametrize("command", ["info", "evaluate"])
def test_other_commands_bad_image(tmp_path: Path, command: str) -> None:
    image = _bad_image("text", tmp_path)
    args = ["info", str(image)] if command == "info" else ["evaluate", "-i", str(image), "-r", str(image), "-o", str(tmp_path / "m.csv")]
    result = run_cli(*args)
    _assert_clean_error(result, image.name)
    assert not (tmp_path / "m.csv").exists()


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = run_cli("--debug", "info", str(tmp_path / "missing.nii.gz"))
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_existing_output_needs_force(tmp_path: Path, tiny_run: Path, tiny_model: Path) -> None:
    image = next((tiny_run / "data" / "imagesTs").glob("*.nii.gz"))
    out = tmp_path / "mask.nii.gz"
    out.write_bytes(b"old")
    result = run_cli("predict", "-i", str(image), "-o", str(out), "-m", str(tiny_model), "-q")
    _assert_clean_error(result, str(out), "--force")
    assert out.read_bytes() == b"old"
    result = run_cli("predict", "-i", str(image), "-o", str(out), "-m", str(tiny_model), "-q", "--force")
    assert result.returncode == 0, result.stderr
    assert nib.load(str(out)).shape == nib.load(str(image)).shape


def test_output_folder_not_writable(tmp_path: Path, tiny_run: Path, tiny_model: Path) -> None:
    image = next((tiny_run / "data" / "imagesTs").glob("*.nii.gz"))
    if os.geteuid() == 0:  # root ignores folder permissions, but not a read-only file system
        folder = Path("/proc/medseg-out")
    else:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
    result = run_cli("predict", "-i", str(image), "-o", str(folder / "m.nii.gz"), "-m", str(tiny_model), "-q")
    _assert_clean_error(result, str(folder), "not writable")


def test_model_folder_problems(tmp_path: Path, tiny_run: Path, tiny_model: Path) -> None:
    image = next((tiny_run / "data" / "imagesTs").glob("*.nii.gz"))
    out = tmp_path / "m.nii.gz"
    no_json = tmp_path / "no_json"
    shutil.copytree(tiny_model, no_json)
    (no_json / "medseg.json").unlink()
    _assert_clean_error(run_cli("predict", "-i", str(image), "-o", str(out), "-m", str(no_json), "-q"), "medseg.json")
    wrong = tmp_path / "wrong_weights"
    shutil.copytree(tiny_model, wrong)
    save_file({"something.weight": torch.zeros(3)}, str(wrong / "model.safetensors"))
    _assert_clean_error(run_cli("predict", "-i", str(image), "-o", str(out), "-m", str(wrong), "-q"), "do not match")
    bad_json = tmp_path / "bad_json"
    shutil.copytree(tiny_model, bad_json)
    manifest = json.loads((bad_json / "medseg.json").read_text())
    manifest["network"]["kwargs"]["filters"] = [8, 16, 32]
    (bad_json / "medseg.json").write_text(json.dumps(manifest))
    _assert_clean_error(run_cli("predict", "-i", str(image), "-o", str(out), "-m", str(bad_json), "-q"), "do not match")
    _assert_clean_error(run_cli("predict", "-i", str(image), "-o", str(out), "-m", str(tmp_path / "nope"), "-q"), "not found")
    assert not out.exists()


def test_config_unknown_key_and_wrong_type(tmp_path: Path) -> None:
    config = write_pipeline(tmp_path / "bad.yaml", **{"train.epoch": 3})
    result = run_cli("train", str(config), "-o", str(tmp_path / "run"))
    _assert_clean_error(result, "bad.yaml", "train.epoch", "unknown key", "epochs")
    assert not (tmp_path / "run").exists()
    config = write_pipeline(tmp_path / "bad2.yaml", **{"train.lr": "fast"})
    _assert_clean_error(run_cli("train", str(config), "-o", str(tmp_path / "run")), "train.lr")


def test_geometry_mismatch_in_evaluate(tmp_path: Path) -> None:
    a = _nifti(tmp_path / "a.nii.gz", np.zeros((8, 8, 8), np.uint8))
    b = tmp_path / "b.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.uint8), np.diag([2.0, 1, 1, 1])), str(b))
    result = run_cli("evaluate", "-i", str(a), "-r", str(b), "-o", str(tmp_path / "m.csv"))
    _assert_clean_error(result, "a.nii.gz", "geometry")
    assert not (tmp_path / "m.csv").exists()
