"""Distributed training through torchrun (2 CPU processes, gloo): the ranks end with identical weights,
only rank 0 writes the run, and a run resumed under torchrun ends exactly where an uninterrupted one does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from tests.conftest import write_pipeline

WORKER = Path(__file__).with_name("ddp_worker.py")


def _torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_two_process_training_is_in_sync_and_resumes_exactly(tmp_path: Path) -> None:
    config = write_pipeline(tmp_path / "p.yaml", **{"data.synthetic.n_train": 5, "train.epochs": 2})
    straight = tmp_path / "straight"
    _torchrun(str(WORKER), str(config), str(straight), "2", cwd=tmp_path)
    w0, w1 = load_file(str(straight / "rank0.safetensors")), load_file(str(straight / "rank1.safetensors"))
    assert w0.keys() == w1.keys() and all(torch.equal(w0[k], w1[k]) for k in w0)
    summary = json.loads((straight / "rank1.json").read_text())
    assert summary["world_size"] == 2 and summary["replicas_identical"] is True
    # rank 0 alone wrote the run: one metrics row per epoch, one model package
    assert len((straight / "metrics.csv").read_text().strip().splitlines()) == 3
    assert (straight / "model" / "model.safetensors").is_file()
    saved = load_file(str(straight / "checkpoints" / "last" / "model.safetensors"))
    assert all(torch.equal(saved[k], w0[k]) for k in saved)

    # the CLI under torchrun: one epoch, then --resume to two; same weights as the uninterrupted run
    split = tmp_path / "split"
    base = ["-m", "medseg", "train", str(config), "-o", str(split), "--device", "cpu", "-q"]
    first = _torchrun(*base, "--epochs", "1", cwd=tmp_path)
    assert first.stdout.count('"world_size": 2') == 1  # only rank 0 prints the summary
    _torchrun(*base, "--resume", "--epochs", "2", cwd=tmp_path)
    resumed = load_file(str(split / "checkpoints" / "last" / "model.safetensors"))
    assert all(torch.equal(resumed[k], saved[k]) for k in saved)
