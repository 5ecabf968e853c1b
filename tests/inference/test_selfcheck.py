"""``medseg selfcheck``: no model is a failure unless --allow-empty; optional outputs are listed; the Docker
HEALTHCHECK (``medseg selfcheck --quiet`` with ``MEDSEG_MODELS=/models``) passes with models baked in."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_medseg

REPO = Path(__file__).resolve().parents[2]



def test_no_model_fails_unless_allow_empty(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.delenv("MEDSEG_MODELS", raising=False)
    assert run_medseg("selfcheck", "--device", "cpu") == 1
    out = capsys.readouterr().out
    assert "problem:  no model package" in out and "--allow-empty" in out and "\nok\n" not in out
    assert run_medseg("selfcheck", "--device", "cpu", "--allow-empty") == 0
    assert capsys.readouterr().out.endswith("ok\n")
    empty = tmp_path / "models"
    empty.mkdir()
    monkeypatch.setenv("MEDSEG_MODELS", str(empty))  # an image built without models, nothing mounted
    assert run_medseg("selfcheck", "--device", "cpu", "--json") == 1
    result = json.loads(capsys.readouterr().out)
    assert not result["ok"] and result["problems"] == [f"no model package under {empty}; nothing to segment with (--allow-empty to accept that)"]


def test_optional_outputs_are_reported(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    assert run_medseg("selfcheck", "--device", "cpu", "--allow-empty", "--json") == 0
    outputs = json.loads(capsys.readouterr().out)["outputs"]
    assert outputs["dicom-seg"]["available"]  # highdicom and pydicom are core dependencies
    assert not outputs["openvino"]["available"] and outputs["openvino"]["missing"] == ["openvino"]
    assert run_medseg("selfcheck", "--device", "cpu", "--allow-empty") == 0
    text = capsys.readouterr().out
    assert "optional: dicom-seg: available" in text and "optional: openvino: not available (openvino not installed)" in text


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cuda"])
def test_docker_healthcheck_passes_with_models_baked_in(dockerfile: str, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (REPO / "docker" / dockerfile).read_text()
    health = re.search(r'^HEALTHCHECK .*CMD (\[.*\])$', text, re.M)
    assert health is not None
    command = json.loads(health.group(1))
    assert command[:2] == ["medseg", "selfcheck"] and "--allow-empty" not in command  # an image with nothing to serve is unhealthy
    assert "MEDSEG_MODELS=/models" in text and "COPY --from=build /models /models" in text
    baked = tmp_path / "models"  # what the build stage copies: /models/NAME/
    shutil.copytree(tiny_model, baked / "tiny")
    monkeypatch.setenv("MEDSEG_MODELS", str(baked))
    assert run_medseg(*command[1:], "--device", "cpu") == 0
    shutil.rmtree(baked / "tiny")
    assert run_medseg(*command[1:], "--device", "cpu") == 1
