"""Progress when stderr is not a terminal (logs, Docker): one plain line per step, no bars; --quiet: none."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli, write_pipeline

BAR_GLYPHS = ("━", "⠋", "\r")


def test_train_prints_one_line_per_step_and_quiet_silences_them(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path / "tiny.yaml", **{"train.epochs": 2})
    result = run_cli("train", str(pipeline), "-o", str(tmp_path / "run"), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert any(line.startswith("generating 5 ct_phantom phantoms in ") for line in lines), result.stderr
    assert any(line.startswith("loading and preprocessing 3 training case(s)") for line in lines), result.stderr
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [e.split(":")[0] for e in epochs] == ["epoch 1/2", "epoch 2/2"], result.stderr
    assert "loss " in epochs[0]
    assert not any(glyph in result.stderr for glyph in BAR_GLYPHS), result.stderr

    quiet = run_cli("train", str(pipeline), "-o", str(tmp_path / "quiet"), "--device", "cpu", "--quiet")
    assert quiet.returncode == 0, quiet.stderr
    assert "generating" not in quiet.stderr and "epoch 1/2" not in quiet.stderr, quiet.stderr


def test_batch_predict_names_case_k_of_n_and_each_phase(tmp_path: Path, tiny_run: Path, tiny_model: Path) -> None:
    images = tiny_run / "data" / "imagesTr"
    names = sorted(p.name.removesuffix(".nii.gz").removesuffix("_0000") for p in images.glob("*.nii.gz"))
    result = run_cli("predict", "-i", str(images), "-o", str(tmp_path / "out"), "-m", str(tiny_model), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert f"loading model {tiny_model}" in lines, result.stderr
    n = len(names)
    for k in range(1, n + 1):
        case_lines = [line for line in lines if line.startswith(f"case {k}/{n} ")]
        phases = [line.split(": ", 1)[1] for line in case_lines]
        assert phases == ["reading", "preprocessing and network", "restoring to the input geometry", "writing outputs"], result.stderr
    assert not any(glyph in result.stderr for glyph in BAR_GLYPHS), result.stderr

    quiet = run_cli("predict", "-i", str(images), "-o", str(tmp_path / "quiet"), "-m", str(tiny_model), "--device", "cpu", "-q")
    assert quiet.returncode == 0, quiet.stderr
    assert "loading model" not in quiet.stderr and "case 1/" not in quiet.stderr, quiet.stderr
