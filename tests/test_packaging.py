"""pyproject lists packages by hand (pipelines/ ships as medseg.pipelines): none may be missing."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_is_listed() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "medseg").rglob("__init__.py")}
    assert found - listed == set(), "add these to [tool.setuptools] packages"
    assert "medseg.pipelines" in listed


def test_bundled_demo_pipeline_validates() -> None:
    from medseg.config import bundled_pipeline, load_pipeline

    config = load_pipeline(bundled_pipeline("demo"))
    assert config.deterministic and config.name == "demo"


def test_every_pipeline_yaml_validates(tmp_path: Path) -> None:
    from medseg.config import load_pipeline
    from medseg.config.stages import is_staged, load_stages

    for path in sorted((ROOT / "pipelines").glob("*.yaml")):
        if is_staged(path):
            assert load_stages(path, tmp_path / path.stem)
        else:
            load_pipeline(path)


def test_dicom_seg_works_after_a_plain_install() -> None:
    """`make demo` installs medseg without extras: DICOM SEG output (highdicom, pydicom) must come with it."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=!~\[; ]", dep, maxsplit=1)[0].lower() for dep in project["dependencies"]}
    assert {"highdicom", "pydicom"} <= names
    assert "dicom" in project["optional-dependencies"]  # the old extra still resolves (docker/build.sh, pip install medseg[dicom])


def test_viewer_assets_ship_as_package_data() -> None:
    """The HTML case viewer needs its template and the NiiVue bundle inside the wheel (no network at run time)."""
    from fnmatch import fnmatch

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["medseg"]
    assets = [p.relative_to(ROOT / "medseg").as_posix() for p in (ROOT / "medseg" / "viewer_assets").iterdir()]
    assert {"viewer_assets/niivue.umd.js", "viewer_assets/viewer.html", "viewer_assets/LICENSE.niivue"} <= set(assets)
    assert all(any(fnmatch(a, pattern) for pattern in patterns) for a in assets)
