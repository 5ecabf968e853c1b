"""A run folder without a checkpoint does not block the next try; a failed start leaves no folder behind."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medseg.engine.run import train_pipeline
from medseg.errors import MedsegError
from tests.conftest import TINY_PIPELINE, run_cli, write_pipeline


def test_folder_without_checkpoint_is_started_afresh(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("name: left over from a start that failed\n")
    pipeline = write_pipeline(tmp_path / "tiny.yaml", **{"train.epochs": 1})
    result = run_cli("train", str(pipeline), "-o", str(run), "--device", "cpu", "-q")  # no --force
    assert result.returncode == 0, result.stderr
    assert (run / "checkpoints" / "last").is_dir() and (run / "model" / "medseg.json").is_file()
    assert yaml.safe_load((run / "config.yaml").read_text())["name"] == "tiny"
    again = run_cli("train", str(pipeline), "-o", str(run), "--device", "cpu", "-q")  # now it holds a checkpoint
    assert again.returncode == 1 and "run folder exists (use --resume" in again.stderr


def test_wrong_dataset_path_leaves_no_folder(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path / "p.yaml", **{"data.synthetic": None, "data.dataset": str(tmp_path / "no_such_dataset")})
    result = run_cli("train", str(pipeline), "-o", str(tmp_path / "run"), "--device", "cpu")
    assert result.returncode == 1 and result.stderr.startswith("error: ") and "no_such_dataset" in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()


def test_staged_pipeline_with_wrong_dataset_leaves_no_folder(tmp_path: Path) -> None:
    config = {**yaml.safe_load(yaml.safe_dump(TINY_PIPELINE)), "stages": [{"name": "localiser"}, {"name": "segmenter"}]}
    config["data"] = {**config["data"], "synthetic": None, "dataset": str(tmp_path / "no_such_dataset")}
    path = tmp_path / "staged.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(MedsegError, match="no_such_dataset"):
        train_pipeline(path, tmp_path / "run_real", device="cpu", progress=False)
    assert not (tmp_path / "run_real").exists()


def test_a_folder_that_existed_is_not_removed(tmp_path: Path) -> None:
    run = tmp_path / "mine"
    run.mkdir()
    pipeline = write_pipeline(tmp_path / "p.yaml", **{"data.synthetic": None, "data.dataset": str(tmp_path / "no_such_dataset")})
    with pytest.raises(MedsegError):
        train_pipeline(pipeline, run, device="cpu", progress=False)
    assert run.is_dir()
