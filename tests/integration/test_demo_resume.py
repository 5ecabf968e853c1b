"""pipelines/demo.yaml is deterministic: 2 epochs straight == 1 epoch, then --resume --epochs 2 (CLI)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from tests.conftest import run_cli

DEMO = Path(__file__).resolve().parents[2] / "pipelines" / "demo.yaml"


def test_demo_pipeline_resume_gives_identical_weights(tmp_path: Path) -> None:
    a, b = tmp_path / "A", tmp_path / "B"
    for args in (["-o", str(a), "--epochs", "2"], ["-o", str(b), "--epochs", "1"], ["-o", str(b), "--resume", "--epochs", "2"]):
        result = run_cli("train", str(DEMO), *args, "--device", "cpu", "-q")
        assert result.returncode == 0, result.stderr
    wa = load_file(str(a / "checkpoints" / "last" / "model.safetensors"))
    wb = load_file(str(b / "checkpoints" / "last" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
