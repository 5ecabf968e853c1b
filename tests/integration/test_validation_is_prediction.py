"""Training validation runs the code that ships: a case's logged validation Dice is what ``medseg predict``
followed by ``medseg evaluate`` give for it (same window engine, TTA, head decoding and geometry restore)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from medseg.config import load_pipeline
from medseg.engine.variants import create_trainer
from tests.conftest import run_cli

DEMO = Path(__file__).resolve().parents[2] / "pipelines" / "demo.yaml"


def test_validation_dice_equals_predict_then_evaluate(tmp_path: Path) -> None:
    overrides = {"train.epochs": 1, "train.val_every": 1, "data.synthetic.n_train": 4, "data.synthetic.n_test": 0, "data.val_fraction": 0.25}
    config = load_pipeline(DEMO, overrides)
    run = tmp_path / "run"
    create_trainer(config, run, device="cpu", progress=False).fit()

    manifest = json.loads((run / "model" / "medseg.json").read_text())
    (case,) = manifest["training"]["val_cases"]
    dataset = json.loads((run / "data" / "dataset.json").read_text())
    entry = next(e for e in dataset["training"] if Path(e["label"]).name.startswith(case))
    image, label = (run / "data" / entry["image"]), (run / "data" / entry["label"])
    with open(run / "metrics.csv", encoding="utf-8") as fh:
        logged = list(csv.DictReader(fh))[-1]

    predicted = tmp_path / "pred.nii.gz"
    # --backend torch: validation runs the PyTorch network (the CPU default, OpenVINO, agrees to >= 99.99% of voxels)
    result = run_cli("predict", "-i", str(image), "-m", str(run / "model"), "-o", str(predicted), "--quiet", "--backend", "torch")
    assert result.returncode == 0, result.stderr
    scores = tmp_path / "scores.csv"
    result = run_cli("evaluate", "-i", str(predicted), "-r", str(label), "-o", str(scores), "--labels", "1,2")
    assert result.returncode == 0, result.stderr
    with open(scores, encoding="utf-8") as fh:
        rows = {int(r["label"]): float(r["dice"]) for r in csv.DictReader(fh) if r["label"] in ("1", "2")}
    assert float(logged["val_dice_organ"]) == pytest.approx(rows[1], abs=1e-6)
    assert float(logged["val_dice_lesion"]) == pytest.approx(rows[2], abs=1e-6)
    assert 0.0 < rows[1] < 1.0  # a real, imperfect prediction: the equality is not trivially 0 == 0
