"""The 4-modality glioma phantom: nested regions, BraTS-like contrasts, dataset and release writers."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from medseg.data import generate_phantom, list_phantoms, load_decathlon
from medseg.data.brats import load_brats
from medseg.data.brats_labels import detect_convention
from medseg.data.glioma_phantom import GliomaPhantomSpec, glioma_phantom, without_enhancement, write_brats_layout
from medseg.errors import MedsegConfigError

SPEC = GliomaPhantomSpec(spacing_mm=(4.0, 4.0, 4.0), no_enhancement=0.0)
T1, T1CE, T2, FLAIR = range(4)


@pytest.fixture(scope="module")
def case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return glioma_phantom(7, SPEC)


def test_regions_are_nested_and_inside_the_brain(case) -> None:
    images, levels, affine = case
    assert images.shape == (4, 36, 44, 32) and levels.shape == images.shape[1:]
    np.testing.assert_allclose(np.diag(affine)[:3], 4.0)
    brain = images[FLAIR] > 0
    assert set(np.unique(levels)) == {0, 1, 2, 3}
    assert not (levels[~brain] > 0).any()  # tumour inside the (skull-stripped) brain
    assert (images[:, ~brain] == 0).all()
    # oedema mostly surrounds the core, and the enhancing rim mostly surrounds the necrosis
    for inner, outer_level in ((levels >= 2, 1), (levels == 2, 3)):
        shell = ndimage.binary_dilation(inner) & ~inner
        assert (levels[shell] == outer_level).mean() > 0.5


def _mean(images: np.ndarray, mask: np.ndarray, modality: int) -> float:
    return float(images[modality][mask].mean())


def test_contrasts_follow_brats(case) -> None:
    images, levels, _ = case
    brain = images[FLAIR] > 0
    normal = brain & (levels == 0)
    oedema, enhancing = levels == 1, levels == 3
    for modality in (T2, FLAIR):  # oedema bright on T2 and FLAIR
        assert _mean(images, oedema, modality) > 1.3 * _mean(images, normal, modality)
    assert _mean(images, enhancing, T1CE) > 1.3 * _mean(images, oedema, T1CE)  # ET bright on T1ce...
    assert _mean(images, enhancing, T1CE) > 1.15 * _mean(images, normal, T1CE)  # (partial volume at 4 mm)
    assert _mean(images, enhancing, T1) < _mean(images, normal, T1)  # ...and not before contrast


def test_the_dataset_spreads_cases_without_enhancing_tumour(tmp_path: Path) -> None:
    assert [i for i in range(36) if without_enhancement(i, 0.15)] == [6, 13, 19, 26, 33]
    dataset = generate_phantom("glioma_phantom", tmp_path, 7, 0, seed=1, spacing_mm=[8, 8, 8])
    has_et = [bool((np.asarray(nib.load(c["label"]).dataobj) == 4).any()) for c in load_decathlon(dataset)]
    assert has_et == [True] * 6 + [False]
    _, levels, _ = glioma_phantom(0, GliomaPhantomSpec(spacing_mm=(8.0, 8.0, 8.0)), enhancing=False)
    assert 3 not in np.unique(levels) and 2 in np.unique(levels)


@pytest.mark.parametrize("convention", ["2018", "2023"])
def test_dataset_writer(tmp_path: Path, convention: str) -> None:
    dataset = generate_phantom("glioma_phantom", tmp_path, 2, 1, seed=3, convention=convention, spacing_mm=[8, 8, 8])
    meta = json.loads(dataset.read_text())
    assert meta["modality"] == {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"}
    assert set(meta["labels"]) == ({"0", "1", "2", "4"} if convention == "2018" else {"0", "1", "2", "3"})
    cases = load_decathlon(dataset)
    assert len(cases) == 2 and all(len(c["image"]) == 4 for c in cases)
    assert [Path(p).name for p in cases[0]["image"]] == [f"glioma_000_000{i}.nii.gz" for i in range(4)]
    labels = [np.asarray(nib.load(c["label"]).dataobj) for c in cases]
    assert {detect_convention(lab).convention for lab in labels if lab.max() >= 3} <= {convention}
    orientations = [nib.aff2axcodes(nib.load(c["label"]).affine) for c in cases]
    assert orientations == [("L", "P", "S"), ("R", "A", "S")]
    assert "glioma_phantom" in list_phantoms()


def test_brats_release_writer_round_trips_through_the_loader(tmp_path: Path) -> None:
    write_brats_layout(tmp_path, 2, naming="2023", convention="2023", suffix=".nii", spacing_mm=[8, 8, 8])
    cases = load_brats(tmp_path)
    assert [c["case"] for c in cases] == ["Phantom-00000-000", "Phantom-00001-000"]
    assert cases[0]["image"][1].endswith("-t1c.nii") and cases[0]["label"].endswith("-seg.nii")


def test_unknown_options_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(MedsegConfigError, match="spacing"):
        generate_phantom("glioma_phantom", tmp_path, 2, 0, 0, spacing=[4, 4, 4])
    with pytest.raises(MedsegConfigError, match="convention"):
        generate_phantom("glioma_phantom", tmp_path, 2, 0, 0, convention="2019")


def test_thin_low_contrast_rim_option() -> None:
    """``enhancing_rim_mm`` makes ET a thin shell at the core's border; ``enhancing_contrast`` dims it on T1ce."""
    default = GliomaPhantomSpec(spacing_mm=(3.0, 3.0, 3.0), no_enhancement=0.0)
    rim = dataclasses.replace(default, enhancing_rim_mm=(3.0, 6.0), enhancing_contrast=0.4)
    for seed in (7, 8):
        stats = {}
        for name, spec in (("default", default), ("rim", rim)):
            images, levels, _ = glioma_phantom(seed, spec)
            core, et = levels >= 2, levels == 3
            depth = ndimage.distance_transform_edt(core, sampling=spec.spacing_mm)  # mm from the core's border
            stats[name] = {"max_depth": depth[et].max(), "et_share": et.sum() / core.sum(),
                           "t1ce_et_over_core": _mean(images, et, T1CE) / _mean(images, levels == 2, T1CE),
                           "t1ce_et_over_oedema": _mean(images, et, T1CE) / _mean(images, levels == 1, T1CE)}
        assert stats["rim"]["max_depth"] <= 6.0 < stats["default"]["max_depth"]  # only the outer layer of the core
        assert 0 < stats["rim"]["et_share"] < stats["default"]["et_share"] - 0.1
        assert 1.2 < stats["rim"]["t1ce_et_over_core"] < stats["default"]["t1ce_et_over_core"] - 0.5  # still brighter, less so
        assert stats["rim"]["t1ce_et_over_oedema"] < 1.5 < stats["default"]["t1ce_et_over_oedema"]
    _, levels, _ = glioma_phantom(0, rim, enhancing=False)
    assert 3 not in np.unique(levels) and 2 in np.unique(levels)
    with pytest.raises(MedsegConfigError, match="enhancing_rim_mm"):
        GliomaPhantomSpec.from_options({"enhancing_rim_mm": [6, 3]})
    with pytest.raises(MedsegConfigError, match="enhancing_contrast"):
        GliomaPhantomSpec.from_options({"enhancing_contrast": 1.5})
