"""The CLI's surface: instant help (no torch/MONAI import), -h everywhere, plain metavars, one option
convention with the old spellings as hidden aliases, and `medseg train --set/--data`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from medseg._version import __version__
from medseg.cli.main import ALIASES, translate_aliases
from tests.conftest import run_cli, write_pipeline, run_medseg_captured

#: one command per module of medseg/cli (besides the app itself and the shared options)
COMMANDS = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "medseg" / "cli").glob("*.py") if p.stem not in {"__init__", "main", "options"})


_run = run_medseg_captured


def test_help_lists_every_command_and_bare_medseg_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "--help")
    assert code == 0 and not err
    listed = re.findall(r"^  (\w+) ", out.split("Commands:")[1], flags=re.M)
    assert sorted(listed) == COMMANDS
    assert _run(capsys) == (0, out, "")  # a bare `medseg`: the same help, exit 0 (not an error)
    assert _run(capsys, "-h") == (0, out, "")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_is_plain(capsys: pytest.CaptureFixture[str], command: str) -> None:
    code, out, err = _run(capsys, command, "--help")
    assert code == 0 and not err and out.startswith(f"Usage: medseg {command} ")
    assert _run(capsys, command, "-h") == (0, out, "")
    assert not re.search(r"<[\w\[\], ]+>", out), out  # no Typer type labels such as <path> or <list[Path]>
    assert "``" not in out and ":mod:" not in out and ":func:" not in out  # no raw reST
    assert not re.search(r"\{\w+\}", out)  # no {paths}-style argument names
    for old in ALIASES.get(command, {}):  # old spellings work but are not advertised
        assert not re.search(rf"(^|[\s,]){re.escape(old)}([\s,=]|$)", out, flags=re.M), old


def test_metavars_name_what_to_type(capsys: pytest.CaptureFixture[str]) -> None:
    out = _run(capsys, "predict", "--help")[1]
    for expected in ("-i, --input PATH", "-o, --output PATH", "-m, --model PATH", "--overlap FLOAT", "--sw-batch-size N", "--extra NAME=PATH"):
        assert expected in out
    assert "Usage: medseg check [OPTIONS] PATH..." in _run(capsys, "check", "--help")[1]
    train = _run(capsys, "train", "--help")[1]
    assert "Usage: medseg train [OPTIONS] PIPELINE" in train and "--set KEY=VALUE" in train and "--data PATH" in train


def test_version_and_help_import_neither_torch_nor_monai() -> None:
    """Building every help text and the version must not import torch or MONAI (that is what makes them instant)."""
    code = (
        "import sys\n"
        "from medseg.cli.main import main\n"
        f"for args in [['--version'], ['--help'], *[[c, '--help'] for c in {COMMANDS!r}]]:\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit as exc:\n"
        "        assert not exc.code, (args, exc.code)\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'monai', 'SimpleITK', 'matplotlib', 'scipy'))\n"
        "print('HEAVY', heavy[:5])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"medseg {__version__}" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "HEAVY []"


def test_translate_aliases_rewrites_old_spellings_per_command() -> None:
    args, warnings = translate_aliases(["--debug", "evaluate", "--pred", "p.nii.gz", "--ref=r.nii.gz", "--out", "m.csv", "--labels", "1"])
    assert args == ["--debug", "evaluate", "--input", "p.nii.gz", "--reference=r.nii.gz", "--output", "m.csv", "--labels", "1"]
    assert len(warnings) == 3 and all(w.startswith("warning: evaluate --") and "old spelling" in w for w in warnings)
    # the same word is current in another command: check --labels stays, register --labels is the old label-map option
    assert translate_aliases(["check", "a.nii.gz", "--labels", "0,1"]) == (["check", "a.nii.gz", "--labels", "0,1"], [])
    assert translate_aliases(["register", "--labels", "m.nii.gz"])[0] == ["register", "--moving-label-map", "m.nii.gz"]
    assert translate_aliases(["predict", "-i", "x", "--", "--out"])[0] == ["predict", "-i", "x", "--", "--out"]


def test_old_spellings_still_work_with_a_warning(tmp_path: Path) -> None:
    import nibabel as nib
    import numpy as np

    labels = np.zeros((8, 8, 8), np.uint8)
    labels[2:5, 2:5, 2:5] = 1
    nib.save(nib.Nifti1Image(labels, np.eye(4)), str(tmp_path / "a.nii.gz"))
    new = run_cli("evaluate", "-i", str(tmp_path / "a.nii.gz"), "-r", str(tmp_path / "a.nii.gz"), "-o", str(tmp_path / "new.csv"))
    old = run_cli("evaluate", "--pred", str(tmp_path / "a.nii.gz"), "--ref", str(tmp_path / "a.nii.gz"), "--out", str(tmp_path / "old.csv"))
    assert new.returncode == 0 and old.returncode == 0, old.stderr
    assert (tmp_path / "new.csv").read_text() == (tmp_path / "old.csv").read_text()
    assert "Dice 1.0000" in old.stdout and "--pred is an old spelling; use --input" in old.stderr and "old spelling" not in new.stderr
    check = run_cli("check", str(tmp_path / "a.nii.gz"), "--label", str(tmp_path / "a.nii.gz"), "--labels", "0,1")
    assert check.returncode == 0 and "ok: 2 file(s)" in check.stdout and "use --label-map" in check.stderr


def test_set_rejects_a_wrong_key_with_did_you_mean(tmp_path: Path) -> None:
    config = write_pipeline(tmp_path / "p.yaml")
    result = run_cli("train", str(config), "-o", str(tmp_path / "run"), "--set", "train.epoch=1")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "error: --set train.epoch=1: unknown key 'epoch' in 'train' (did you mean 'train.epochs'?)" in result.stderr
    result = run_cli("train", str(config), "-o", str(tmp_path / "run"), "--set", "train.lr=fast")
    assert result.returncode == 1 and "train.lr" in result.stderr  # a wrong type: the schema's one-line error
    result = run_cli("train", str(config), "-o", str(tmp_path / "run"), "--set", "epochs")
    assert result.returncode == 1 and "expected KEY=VALUE" in result.stderr
    result = run_cli("train", str(config), "-o", str(tmp_path / "run"), "--data", str(tmp_path / "nowhere"))
    assert result.returncode == 1 and "--data" in result.stderr and "nowhere" in result.stderr
    assert not (tmp_path / "run").exists()


def test_train_with_set_and_data_on_a_users_dataset(tmp_path: Path, tiny_run: Path) -> None:
    """A pipeline whose data section points nowhere useful, trained on another dataset with changed keys."""
    config = write_pipeline(tmp_path / "p.yaml", **{"data.synthetic.n_train": 40})  # would be slow: --data replaces it
    result = run_cli(
        "train", str(config), "-o", str(tmp_path / "run"), "--data", str(tiny_run / "data" / "dataset.json"),
        "--set", "train.epochs=1", "--set", "train.lr=0.005", "--set", "network.kwargs.filters=[4, 8, 8]", "--device", "cpu", "-q",
    )
    assert result.returncode == 0, result.stderr
    used = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert used["data"]["dataset"] == str((tiny_run / "data" / "dataset.json").resolve()) and used["data"]["synthetic"] is None
    assert used["train"]["epochs"] == 1 and used["train"]["lr"] == 0.005 and used["network"]["kwargs"]["filters"] == [4, 8, 8]
    assert not (tmp_path / "run" / "data").exists()  # no phantom was generated
    manifest = json.loads((tmp_path / "run" / "model" / "medseg.json").read_text())
    assert manifest["training"]["epochs"] == 1
