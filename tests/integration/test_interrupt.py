"""Ctrl-C / SIGTERM during `medseg train`: finish the step, checkpoint, say how to resume, exit 130."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from medseg.engine.state_io import load_state
from tests.conftest import run_cli, write_pipeline


def _start_train(pipeline: Path, run: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.Popen(
        [sys.executable, "-m", "medseg", "train", str(pipeline), "-o", str(run), "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def _wait_for(path: Path, process: subprocess.Popen[str], timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < end, f"{path} did not appear"
        time.sleep(0.05)


def test_sigint_checkpoints_and_resume_continues(tmp_path: Path) -> None:
    # many short epochs: the signal lands inside an epoch after the first one has ended
    pipeline = write_pipeline(tmp_path / "tiny.yaml", **{"train.epochs": 200, "train.iterations_per_epoch": 3, "train.val_every": 1000})
    run = tmp_path / "run"
    process = _start_train(pipeline, run)
    _wait_for(run / "metrics.csv", process)  # the first epoch has ended
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("interrupted at epoch ") and " (iteration " in line, stderr
    assert line.endswith(f"; continue with: medseg train {pipeline} -o {run} --device cpu --resume"), line
    epoch = int(line.split("epoch ")[1].split(" ")[0])
    iteration = int(line.split("(iteration ")[1].split(")")[0])
    state = load_state(run / "checkpoints" / "last", "state")
    assert state["epoch"] == epoch - 1 and state["epoch_step"] == iteration and 0 <= iteration <= 3
    assert "Traceback" not in stderr

    resumed = run_cli("train", str(pipeline), "-o", str(run), "--device", "cpu", "--resume", "--epochs", str(epoch + 1), "-q")
    assert resumed.returncode == 0, resumed.stderr
    state = load_state(run / "checkpoints" / "last", "state")
    assert state["epoch"] == epoch + 1 and state["epoch_step"] == 0
    epochs = [row["epoch"] for row in state["history"]]
    assert epochs == list(range(1, epoch + 2)), epochs  # the interrupted epoch was finished, nothing repeated


def test_second_signal_exits_at_once(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path / "tiny.yaml", **{"train.epochs": 200, "train.iterations_per_epoch": 3, "train.val_every": 1000})
    run = tmp_path / "run"
    process = _start_train(pipeline, run)
    _wait_for(run / "metrics.csv", process)
    process.send_signal(signal.SIGTERM)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "again: exiting now, without a checkpoint" in stderr and "continue with" not in stderr, stderr
