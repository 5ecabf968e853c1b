"""Nested-class BraTS end to end: train on glioma phantoms, predict (labels + region masks) in the input geometry,
evaluate by region; the softmax head through the same path; head/output-kind mismatches refused."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml

from medseg.cli.main import main
from medseg.config import load_pipeline
from medseg.data.brats_labels import labels_to_regions
from medseg.data.glioma_phantom import write_brats_layout
from medseg.data.layouts import load_decathlon
from medseg.model.package import load_model_package
from medseg.engine.trainer import Trainer
from medseg.errors import MedsegConfigError
from medseg.inference.predictor import Predictor
from medseg.metrics.brats import nesting_violations
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[2]
#: the phantom pipeline, shrunk: 6 mm voxels, 4-16 filters, 2 epochs of 3 iterations
TINY = {
    "data.synthetic.n_train": 4,
    "data.synthetic.n_test": 1,
    "data.synthetic.options": {"spacing_mm": [6.0, 6.0, 6.0]},
    "preprocess.target_spacing": [6.0, 6.0, 6.0],
    "network.kwargs.base_filters": 4,
    "network.kwargs.levels": 3,
    "network.kwargs.deep_supervision_heads": 1,
    "loss.kwargs.deep_supervision_weights": [1.0, 0.5],
    "train.epochs": 2,
    "train.iterations_per_epoch": 3,
    "train.patch_size": [16, 16, 16],
    "train.val_every": 1,
    "inference.overlap": 0.25,
}


def _config(name: str, **extra: object):
    return load_pipeline(ROOT / "pipelines" / f"{name}.yaml", {**TINY, **extra})


@pytest.fixture(scope="module")
def nested_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("nested") / "run"
    Trainer(_config("brats_nested_phantom"), run, device="cpu", progress=False).fit()
    return run


def _test_case(run: Path) -> dict:
    return load_decathlon(run / "data" / "dataset.json", section="medseg_test_labels")[0]


def test_training_scores_regions_and_packages_the_nested_output(nested_run: Path) -> None:
    header = (nested_run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"val_dice_WT", "val_dice_TC", "val_dice_ET", "val_score"} <= set(header)
    manifest = json.loads((nested_run / "model" / "medseg.json").read_text())
    assert manifest["output"] == {"kind": "nested", "threshold": 0.5}
    assert manifest["network"]["kwargs"]["head"] == "multilevel"


def test_predict_writes_brats_labels_and_region_masks_in_the_input_geometry(nested_run: Path, tmp_path: Path) -> None:
    case = _test_case(nested_run)
    labels_out, regions_out, probs_out = tmp_path / "seg.nii.gz", tmp_path / "regions.nii.gz", tmp_path / "p.nii.gz"
    args = [a for image in case["image"] for a in ("-i", image)]
    result = run_cli("predict", *args, "-o", str(labels_out), "-m", str(nested_run / "model"), "--extra", f"regions={regions_out}",
                     "--probabilities", str(probs_out), "--quiet")
    assert result.returncode == 0, result.stderr
    source = nib.load(case["image"][0])
    assert nib.aff2axcodes(source.affine) == ("L", "P", "S")  # the phantom stores this case like BraTS files
    for path in (labels_out, regions_out, probs_out):
        out = nib.load(str(path))
        assert out.shape[:3] == source.shape
        np.testing.assert_allclose(out.affine, source.affine, atol=1e-5)
        np.testing.assert_allclose(out.header.get_zooms()[:3], source.header.get_zooms()[:3], atol=1e-6)
        assert int(out.header["qform_code"]) == int(source.header["qform_code"])
    labels = np.asarray(nib.load(str(labels_out)).dataobj)
    regions = np.asarray(nib.load(str(regions_out)).dataobj)
    probs = np.asarray(nib.load(str(probs_out)).dataobj)
    assert set(np.unique(labels)) <= {0, 1, 2, 4} and regions.shape == (*labels.shape, 3) and regions.dtype == np.uint8
    np.testing.assert_array_equal(np.moveaxis(regions, -1, 0), labels_to_regions(labels))
    assert (probs[..., :-1] >= probs[..., 1:]).all()  # restored region probabilities are still ordered
    np.testing.assert_array_equal(regions, (probs > 0.5).astype(np.uint8))  # labels decode the thresholded masks

    scores = tmp_path / "scores.csv"
    result = run_cli("evaluate", "-i", str(regions_out), "-r", case["label"], "-o", str(scores), "--regions", "brats")
    assert result.returncode == 0, result.stderr
    assert "prediction: region masks (1 case)" in result.stdout and "in 0 case(s)" in result.stdout


def test_predict_folder_mode_and_unknown_extra(nested_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    case = _test_case(nested_run)
    folder = Path(case["image"][0]).parent  # imagesTs/: glioma_004_0000 .. _0003, one case
    out, regions = tmp_path / "seg", tmp_path / "regions"
    main(["predict", "-i", str(folder), "-o", str(out), "-m", str(nested_run / "model"), "--extra", f"regions={regions}", "-q"])
    name = Path(case["label"]).name
    assert (out / name).is_file() and nib.load(str(regions / name)).shape[-1] == 3

    release = write_brats_layout(tmp_path / "release", 1, seed=5, spacing_mm=[5.0, 5.0, 5.0])  # BraTS case folders
    main(["predict", "-i", str(release), "--layout", "brats", "-o", str(tmp_path / "brats_out"), "-m", str(nested_run / "model"), "-q"])
    written = nib.load(str(tmp_path / "brats_out" / "Phantom_000.nii.gz"))
    assert written.shape == nib.load(str(release / "Phantom_000" / "Phantom_000_flair.nii.gz")).shape

    target = tmp_path / "x.nii.gz"
    capsys.readouterr()  # the batch runs' summary lines
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "-i", case["image"][0], "-i", case["image"][1], "-i", case["image"][2], "-i", case["image"][3],
              "-o", str(target), "-m", str(nested_run / "model"), "--extra", f"edges={tmp_path / 'e.nii.gz'}", "-q"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --extra edges:") and "regions" in err[0]
    assert not target.exists()


def test_softmax_head_runs_through_the_same_path(nested_run: Path, tmp_path: Path) -> None:
    config = _config("brats_softmax_phantom", **{"data.synthetic": None, "data.dataset": str(nested_run / "data"), "train.epochs": 1})
    Trainer(config, tmp_path / "run", device="cpu", progress=False).fit()
    package = load_model_package(tmp_path / "run" / "model")
    assert package.manifest.output.kind == "nested_softmax" and package.head.kind == "nested_softmax"
    result = Predictor(package, torch.device("cpu")).predict_files(_test_case(nested_run)["image"], keep_probabilities=True)
    assert set(np.unique(result.labels)) <= {0, 1, 2, 4} and result.probabilities.shape[-1] == 4
    assert nesting_violations(labels_to_regions(result.labels)).voxels == 0


def test_a_head_the_output_kind_cannot_decode_is_refused(nested_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = _config("brats_nested_phantom", **{"data.synthetic": None, "data.dataset": str(nested_run / "data"), "output": {"kind": "labels"}})
    with pytest.raises(MedsegConfigError, match="use output.kind: nested"):
        Trainer(config, tmp_path / "run", device="cpu", progress=False).setup()
    manifest_path = nested_run / "model" / "medseg.json"
    bad = tmp_path / "bad_model"
    bad.mkdir()
    (bad / "model.safetensors").write_bytes((nested_run / "model" / "model.safetensors").read_bytes())
    manifest = json.loads(manifest_path.read_text())
    manifest["output"] = {"kind": "nested_softmax"}
    (bad / "medseg.json").write_text(json.dumps(manifest))
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "-i", _test_case(nested_run)["image"][0], "-o", str(tmp_path / "o.nii.gz"), "-m", str(bad), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 1 and len(err) == 1 and err[0].startswith("error:") and "cannot decode" in err[0]


def test_bundled_brats_pipelines_validate_and_match_their_heads() -> None:
    from medseg.model.package import build_network
    from medseg.model.heads import check_network, create_head

    for name in ("brats_nested", "brats_softmax", "brats_nested_phantom", "brats_softmax_phantom"):
        config = load_pipeline(ROOT / "pipelines" / f"{name}.yaml")
        check_network(create_head(config.output, config.data.labels), build_network(config.network))
        assert yaml.safe_load((ROOT / "pipelines" / f"{name}.yaml").read_text())["name"] == name
