"""Shared fixtures: tiny phantom datasets, a tiny pipeline and a model package trained once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from medseg.config import apply_overrides

# OMP_NUM_THREADS wins when set: on an oversubscribed machine one thread runs these tiny convolutions ~10x faster
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or min(2, os.cpu_count() or 1)))

#: A pipeline small enough to train in seconds on a CPU (6 mm voxels: ~20x20x15 grids).
TINY_PIPELINE = {
    "name": "tiny",
    "seed": 0,
    "deterministic": True,
    "data": {
        "synthetic": {"kind": "ct_phantom", "n_train": 4, "n_test": 1, "seed": 3},
        "labels": {0: "background", 1: "organ", 2: "lesion"},
        "modalities": ["CT"],
        "val_fraction": 0.25,
    },
    "preprocess": {"intensity": "ct", "ct_window": [-200, 250], "target_spacing": [6.0, 6.0, 6.0]},
    "network": {"name": "unet", "kwargs": {"spatial_dims": 3, "in_channels": 1, "out_channels": 3, "filters": [4, 8, 16]}},
    "train": {"epochs": 2, "batch_size": 2, "patch_size": [16, 16, 8], "samples_per_volume": 2, "optimizer": "adam", "lr": 0.01, "weight_decay": 0.0,
              "threads": torch.get_num_threads()},
    "inference": {"overlap": 0.25, "sw_batch_size": 2},
}


def write_pipeline(path: Path, **overrides: object) -> Path:
    """Write the tiny pipeline (with top-level ``section.key`` overrides) to ``path``."""
    config = yaml.safe_load(yaml.safe_dump(TINY_PIPELINE))
    apply_overrides(config, overrides)
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny pipeline trained once for the whole session (run folder with model/ and data/)."""
    from medseg.config import load_pipeline
    from medseg.engine.trainer import Trainer

    root = tmp_path_factory.mktemp("tiny_run")
    config = write_pipeline(root / "tiny.yaml", **{"train.epochs": 3})
    Trainer(load_pipeline(config), root / "run", device="cpu", progress=False).fit()
    return root / "run"


@pytest.fixture(scope="session")
def tiny_model(tiny_run: Path) -> Path:
    return tiny_run / "model"


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m medseg ARGS`` as a subprocess (what a user types), capturing output."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    return subprocess.run([sys.executable, "-m", "medseg", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def run_medseg(*args: str) -> int:
    """Run the CLI in this process (faster than a subprocess); returns the exit code."""
    from medseg.cli.main import main

    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def run_medseg_captured(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The CLI in this process: ``(exit code, stdout, stderr)``."""
    code = run_medseg(*args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
