"""The HTML case viewer: one self-contained page (no network), its data exact, drawn by a real headless
Chromium (WebGL on SwiftShader) with the legend's colours on screen, radiological by default; ``medseg view``
and ``medseg predict --html``."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from matplotlib.image import imread

from medseg.inference.viewer import NIIVUE_JS, NIIVUE_VERSION, case_html, provenance_summary
from medseg.io.geometry import Geometry
from medseg.io.image_io import read_image, write_image
from medseg.palette import label_colour
from tests.conftest import run_medseg

from tests.inference.browser import Chromium, find_chromium

NAMES = {1: "left marker", 2: "anterior marker", 3: "centre"}


def phantom() -> tuple[np.ndarray, np.ndarray, Geometry]:
    """Integer image and labels stored LPS (so radiological display must flip nothing it should not):
    a slab on the patient's left (label 1), one anterior (label 2), a ball in the middle (label 3)."""
    n = 32
    i, j, k = np.meshgrid(*(np.arange(n),) * 3, indexing="ij")  # RAS voxel indices
    labels = np.zeros((n, n, n), np.uint8)
    labels[(i - 16) ** 2 + (j - 16) ** 2 + (k - 16) ** 2 < 36] = 3
    labels[i < 5] = 1
    labels[j >= n - 5] = 2
    image = (np.where(labels > 0, 150, 60) + (k % 4) * 5).astype(np.float32)
    affine = np.diag([1.0, 1.2, 2.0, 1.0])
    # the same anatomy in LPS voxel order: flip i and j
    lps = np.diag([-1.0, -1.2, 2.0, 1.0])
    lps[:3, 3] = [31.0, 31 * 1.2, 0.0]
    assert np.allclose(lps @ np.array([31, 31, 0, 1]), affine @ np.array([0, 0, 0, 1]))
    return image[::-1, ::-1].copy(), labels[::-1, ::-1].copy(), Geometry((n, n, n), lps)


def page_data(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="case-data">(.*?)</script>', page, re.DOTALL)
    assert match
    return json.loads(match.group(1))


def nifti(b64: str) -> nib.Nifti1Image:
    return nib.Nifti1Image.from_bytes(gzip.decompress(base64.b64decode(b64)))


REPORT = {
    "case": "phantom", "created": "2025-01-01T00:00:00+00:00", "model": {"name": "tiny", "network": "unet", "weights_sha256": "ab" * 32},
    "versions": {"medseg": "0.1.0", "torch": "2.5.0", "monai": "1.4.0", "numpy": "2.0"}, "device": {"name": "cpu", "reason": "no GPU"},
    "settings": {"overlap": 0.5, "tta": False}, "input": {"path": "/data/phantom.nii.gz", "sha256": "cd" * 32,
    "geometry": {"shape": [32, 32, 32], "spacing_mm": [1.0, 1.2, 2.0], "orientation": "LPS"}},
    "seconds": {"network": 1.5, "total": 2.25}, "peak_memory": {"rss_mb": 812.5}, "warnings": ["no foreground was predicted"],
}


def test_page_is_self_contained_and_exact() -> None:
    image, labels, geometry = phantom()
    page = case_html(image, geometry, labels, names=NAMES, title="phantom <1>", warnings=["check </script> <!-- escaping"], report=REPORT)
    # nothing is fetched: no external scripts, styles or URLs to load, NiiVue inline
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)
    assert "{{" + "NIIVUE}}" not in page and "{{" + "DATA}}" not in page
    bundle = NIIVUE_JS.read_text(encoding="utf-8")
    assert bundle in page
    assert "</script" not in bundle.lower() and "<!--" not in bundle  # safe to inline in a <script> element
    assert NIIVUE_JS.stat().st_size < 5 * 2**20
    license_note = (NIIVUE_JS.parent / "LICENSE.niivue").read_text()
    assert hashlib.sha256(NIIVUE_JS.read_bytes()).hexdigest() in license_note and f"@niivue/niivue {NIIVUE_VERSION}" in license_note
    assert "<title>phantom &lt;1&gt;</title>" in page

    data = page_data(page)
    assert data["warnings"] == ["check </script> <!-- escaping"]
    assert page.count("</script>") == 3  # the data, NiiVue and the page's own script
    # the embedded volumes are the input's voxels on the input's grid
    embedded = nifti(data["image"])
    np.testing.assert_array_equal(np.asarray(embedded.dataobj), image)
    assert np.allclose(embedded.affine, geometry.affine)
    np.testing.assert_array_equal(np.asarray(nifti(data["labels"]).dataobj), labels)
    # legend and colour table: palette colours, volumes in ml
    voxel_ml = 1.0 * 1.2 * 2.0 / 1000
    assert [(e["value"], e["name"]) for e in data["legend"]] == list(NAMES.items())
    for entry in data["legend"]:
        assert entry["volume_ml"] == pytest.approx(np.count_nonzero(labels == entry["value"]) * voxel_ml, abs=1e-3)
    lut = data["lut"]
    assert lut["I"] == [0, 1, 2, 3] and lut["A"] == [0, 255, 255, 255]
    assert [(lut["R"][n], lut["G"][n], lut["B"][n]) for n in (1, 2, 3)] == [label_colour(v) for v in (1, 2, 3)]
    rows = dict(data["provenance"])
    assert rows["model"] == "tiny (unet)" and rows["weights sha256"] == "ab" * 8
    assert rows["input grid"] == "32x32x32 voxels of 1x1.2x2 mm, LPS" and rows["peak memory"] == "812.5 MB"
    assert provenance_summary(None) == []


def canvas_pixels(browser: Chromium) -> np.ndarray:
    rect = browser.evaluate("JSON.stringify(document.getElementById('gl').getBoundingClientRect())")
    box = json.loads(rect)
    pixels = (imread(io.BytesIO(browser.screenshot()))[..., :3] * 255).round().astype(int)
    top, left = int(box["top"]), int(box["left"])
    return pixels[top + 2: top + int(box["height"]) - 2, left + 2: left + int(box["width"]) - 2]


def colour_mask(pixels: np.ndarray, value: int, tolerance: int = 8) -> np.ndarray:
    return np.all(np.abs(pixels - np.array(label_colour(value))) <= tolerance, axis=-1)


@pytest.mark.skipif(find_chromium() is None, reason="needs the chromium package (installed by .ci/run)")
def test_viewer_draws_in_headless_chromium(tmp_path: Path) -> None:
    image, labels, geometry = phantom()
    page = tmp_path / "case.html"
    page.write_text(case_html(image, geometry, labels, names=NAMES, window=(0, 255), opacity=1.0, title="phantom"), encoding="utf-8")
    with Chromium() as browser:
        browser.open(page.as_uri())
        assert browser.wait_for("document.body && document.body.dataset.viewer", ("ready", "error")) == "ready", \
            browser.evaluate("document.getElementById('error').textContent")
        pixels = canvas_pixels(browser)
        Path(tmp_path / "screenshot.png").write_bytes(browser.screenshot())
        # not blank: many distinct colours, the grey image among them
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20 and pixels.std() > 20
        for value in NAMES:  # every legend colour appears on the canvas
            assert colour_mask(pixels, value).sum() > 200, f"label {value} colour not drawn"
        legend = browser.evaluate("[...document.querySelectorAll('#legend tr')].map(r => r.textContent)")
        assert [row.split("ml")[0] for row in legend] == [f"{v}{n}{e:.1f} " for v, n, e in
                                                           ((v, n, np.count_nonzero(labels == v) * 0.0024) for v, n in NAMES.items())]

        # axial view, radiological: the patient's left on the right, anterior on top
        browser.evaluate("document.querySelector('[data-view=axial]').click(); new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        pixels = canvas_pixels(browser)
        cols = np.nonzero(colour_mask(pixels, 1))[1]
        rows = np.nonzero(colour_mask(pixels, 2))[0]
        centre = np.nonzero(colour_mask(pixels, 3))
        assert cols.mean() > centre[1].mean() + 20  # left marker right of the centre ball
        assert rows.mean() < centre[0].mean() - 20  # anterior marker above it

        # the opacity slider hides the labels
        browser.evaluate("const s = document.getElementById('opacity'); s.value = 0; s.dispatchEvent(new Event('input'));"
                         "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        pixels = canvas_pixels(browser)
        assert all(colour_mask(pixels, v).sum() < 20 for v in NAMES)



def test_medseg_view_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image, labels, geometry = phantom()
    img = write_image(tmp_path / "img.nii.gz", image, geometry, "image")
    lab = write_image(tmp_path / "lab.nii.gz", labels, geometry, "label")
    report = tmp_path / "case.report.json"
    report.write_text(json.dumps({**REPORT, "labels": {"labels": {"1": {"name": "liver"}, "2": {"name": "vessel"}}}}))
    out = tmp_path / "case.html"
    assert run_medseg("view", str(img), "--label-map", str(lab), "--report", str(report), "-o", str(out), "--png", str(tmp_path / "p.png")) == 0
    data = page_data(out.read_text(encoding="utf-8"))
    assert [e["name"] for e in data["legend"]] == ["liver", "vessel", "label 3"]  # names from the report
    assert data["warnings"] == REPORT["warnings"] and dict(data["provenance"])["case"] == "phantom"
    assert imread(tmp_path / "p.png").shape[1] == 1200

    # errors: one line, exit 1, nothing written
    capsys.readouterr()
    assert run_medseg("view", str(img), "--label-map", str(lab), "-o", str(out)) == 1
    assert "already exists" in capsys.readouterr().err
    other = write_image(tmp_path / "other.nii.gz", labels[:, :, :20], Geometry((32, 32, 20), geometry.affine), "label")
    assert run_medseg("view", str(img), "--label-map", str(other), "-o", str(tmp_path / "bad.html"), "--png", str(tmp_path / "bad.png")) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "other.nii.gz" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad.html").exists() and not (tmp_path / "bad.png").exists()
    assert run_medseg("view", str(img), "-o", str(tmp_path / "x.html"), "--names", "1:liver") == 1
    assert "VALUE=NAME" in capsys.readouterr().err


def test_predict_html(tiny_run: Path, tiny_model: Path, tmp_path: Path) -> None:
    source = next((tiny_run / "data" / "imagesTs").glob("*.nii.gz"))
    out = tmp_path / "case.nii.gz"
    html = tmp_path / "case.html"
    assert run_medseg("predict", "-i", str(source), "-o", str(out), "-m", str(tiny_model), "--device", "cpu", "--html", str(html), "-q") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case.html", "case.nii.gz"]
    data = page_data(html.read_text(encoding="utf-8"))
    predicted, _ = read_image(out, "label")
    np.testing.assert_array_equal(np.asarray(nifti(data["labels"]).dataobj), predicted)
    assert [e["name"] for e in data["legend"]] == ["organ", "lesion"]
    rows = dict(data["provenance"])
    assert rows["model"].startswith("tiny") and rows["input"] == str(source.absolute()) and "network" in rows["seconds"]
    assert data["window"] == [-160.0, 240.0]  # a CT model: the soft-tissue window
    # an existing page stops the run before any work
    assert run_medseg("predict", "-i", str(source), "-o", str(tmp_path / "again.nii.gz"), "-m", str(tiny_model), "--html", str(html), "-q") == 1
    assert not (tmp_path / "again.nii.gz").exists()
