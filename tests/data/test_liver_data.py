"""LiTS and MSD Task03_Liver layouts read in place, and the liver/tumour phantom."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from medseg.data import discover_cases, generate_phantom, list_layouts, list_phantoms
from medseg.data.liver_phantom import LiverPhantomSpec, liver_phantom
from medseg.data.synthetic import save_nifti
from medseg.errors import MedsegInputError


def _nifti(path: Path, value: int = 0) -> Path:
    return save_nifti(path, np.full((4, 4, 3), value, dtype=np.int16), np.diag([0.8, 0.8, 2.5, 1.0]))


def _lits_release(root: Path) -> Path:
    """The download as shipped: two training batch folders, test volumes apart, a macOS resource file."""
    for n, folder in ((0, "Training Batch 1"), (1, "Training Batch 1"), (10, "Training Batch 2"), (2, "Training Batch 2")):
        _nifti(root / folder / f"volume-{n}.nii")
        _nifti(root / folder / f"segmentation-{n}.nii", 1)
    _nifti(root / "LITS-Challenge-Test-Data" / "test-volume-3.nii")
    (root / "Training Batch 1" / "._volume-0.nii").write_bytes(b"\0junk")
    return root


def test_lits_layout_reads_the_release_in_place(tmp_path: Path) -> None:
    root = _lits_release(tmp_path / "LiTS")
    assert "lits" in list_layouts()
    cases = discover_cases(root, "lits")
    assert [c["case"] for c in cases] == ["volume-0", "volume-1", "volume-2", "volume-10", "test-volume-3"]
    by_name = {c["case"]: c for c in cases}
    assert Path(by_name["volume-10"]["image"][0]) == root / "Training Batch 2" / "volume-10.nii"
    assert Path(by_name["volume-10"]["label"]) == root / "Training Batch 2" / "segmentation-10.nii"
    assert by_name["test-volume-3"]["label"] is None
    assert sorted(p.name for p in root.rglob("*.nii")) == sorted({p.name for p in root.rglob("*.nii")})  # nothing renamed


def test_lits_layout_flat_folder_and_gz(tmp_path: Path) -> None:
    _nifti(tmp_path / "volume-5.nii.gz")
    _nifti(tmp_path / "segmentation-5.nii.gz", 2)
    _nifti(tmp_path / "volume-6.nii.gz")  # unlabelled
    cases = discover_cases(tmp_path, "lits")
    assert [(c["case"], c["label"] is not None) for c in cases] == [("volume-5", True), ("volume-6", False)]


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        (["segmentation-4.nii"], "has no volume-4"),
        (["a/volume-1.nii", "b/volume-1.nii"], "appears twice"),
        (["notes.nii"], "no volume-N.nii"),
    ],
)
def test_lits_layout_problems_name_the_file(tmp_path: Path, files: list[str], problem: str) -> None:
    for name in files:
        _nifti(tmp_path / name)
    with pytest.raises(MedsegInputError, match=problem):
        discover_cases(tmp_path, "lits")


def _msd_task03(root: Path, labels: dict[str, str] | None = None) -> Path:
    for n in (0, 1):
        _nifti(root / "imagesTr" / f"liver_{n}.nii.gz")
        _nifti(root / "labelsTr" / f"liver_{n}.nii.gz", 2)
        (root / "imagesTr" / f"._liver_{n}.nii.gz").write_bytes(b"\0junk")
    _nifti(root / "imagesTs" / "liver_132.nii.gz")
    meta = {
        "name": "Liver",
        "labels": labels or {"0": "background", "1": "liver", "2": "cancer"},
        "modality": {"0": "CT"},
        "training": [{"image": f"./imagesTr/liver_{n}.nii.gz", "label": f"./labelsTr/liver_{n}.nii.gz"} for n in (0, 1)],
        "test": ["./imagesTs/liver_132.nii.gz"],
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def test_msd_task03_layout(tmp_path: Path) -> None:
    root = _msd_task03(tmp_path / "Task03_Liver")
    for source in (root, root / "dataset.json"):
        cases = discover_cases(source, "msd_liver")
        assert [(c["case"], c["label"] is not None) for c in cases] == [("liver_0", True), ("liver_1", True), ("liver_132", False)]
    assert Path(cases[0]["label"]).name == "liver_0.nii.gz"


def test_msd_layout_rejects_another_task(tmp_path: Path) -> None:
    root = _msd_task03(tmp_path / "Task07", {"0": "background", "1": "pancreas", "2": "cancer"})
    with pytest.raises(MedsegInputError, match="not Task03_Liver"):
        discover_cases(root, "msd_liver")


def test_liver_phantom_anatomy() -> None:
    spec = LiverPhantomSpec(spacing_xy_mm=(3.0, 3.0), spacing_z_mm=(5.0, 5.0), lesions=(3, 3), lesion_radius_mm=(6.0, 10.0))
    image, label, affine = liver_phantom(4, spec)
    assert image.dtype == np.float32 and label.dtype == np.uint8 and image.shape == label.shape
    assert affine[2, 2] > affine[0, 0]  # thick slices
    assert set(np.unique(label)) == {0, 1, 2}
    world_x = affine[0, 0] * np.argwhere(label > 0)[:, 0] + affine[0, 3]
    assert world_x.mean() > 0  # RAS: the liver sits on the patient's right (+x)
    liver_hu = np.median(image[label == 1])
    assert 40 < liver_hu < 150
    lesions, count = ndimage.label(label == 2)
    contrast = [abs(float(image[lesions == i].mean()) - liver_hu) for i in range(1, count + 1)]
    assert count >= 2 and max(contrast) > 15  # lesions differ from the parenchyma (by varied amounts)
    assert (image < -500).any() and (image > 300).any()  # air and bone
    z_extent = np.flatnonzero((label > 0).any(axis=(0, 1)))
    assert z_extent[0] > 0 and z_extent[-1] < label.shape[2] - 1  # the liver does not fill the field of view


def test_liver_phantom_dataset(tmp_path: Path) -> None:
    assert "liver_phantom" in list_phantoms()
    options = {"spacing_xy_mm": [4.0, 4.0], "spacing_z_mm": [6.0, 6.0]}
    dataset = generate_phantom("liver_phantom", tmp_path, 2, 1, 0, **options)
    meta = json.loads(dataset.read_text())
    assert meta["labels"] == {"0": "background", "1": "liver", "2": "tumour"}
    cases = discover_cases(dataset)
    assert len(cases) == 2
    assert nib.aff2axcodes(nib.load(cases[1]["image"][0]).affine) == ("L", "P", "S")  # orientations vary
    with pytest.raises(TypeError, match="unknown liver_phantom option"):
        generate_phantom("liver_phantom", tmp_path / "x", 2, 0, 0, spacing=[1, 1, 1])


def _dark_objects(image: np.ndarray, label: np.ndarray, spacing: np.ndarray) -> list[dict[str, float]]:
    """Hypodense objects inside the liver: tumour or not, z-extent / in-plane extent, widest slice's radius, HU."""
    liver_hu = float(np.median(image[label == 1]))
    dark = (image < liver_hu - 20) & ndimage.binary_erosion(label > 0)
    components, _ = ndimage.label(dark)
    objects = []
    for i, box in enumerate(ndimage.find_objects(components), 1):
        mask = components[box] == i
        if mask.sum() * spacing.prod() < 200:  # partial-volume specks
            continue
        extent = [(s.stop - s.start) * d for s, d in zip(box, spacing)]
        widest = mask.sum(axis=(0, 1)).max() * spacing[0] * spacing[1]
        objects.append({"tumour": float((label[box][mask] == 2).mean() > 0.5), "elongation": extent[2] / max(extent[:2]),
                        "radius": float(np.sqrt(widest / np.pi)), "hu": float(image[box][mask].mean()) - liver_hu})
    return objects


def test_liver_phantom_inter_slice_option() -> None:
    """Spheres vs tubes along z: alike in one axial slice (radius, HU), told apart only across slices."""
    spec = LiverPhantomSpec(spacing_xy_mm=(2.0, 2.0), spacing_z_mm=(3.0, 3.0), lesions=(3, 3), lesion_radius_mm=(7.0, 10.0),
                            noise_hu=(0.0, 0.0), lesion_shape="sphere", mimics=(1, 1), mimic_length_mm=(24.0, 30.0))
    image, label, affine = liver_phantom(1, spec)
    objects = _dark_objects(image, label, np.abs(np.diag(affine)[:3]))
    tumours = [o for o in objects if o["tumour"]]
    mimics = [o for o in objects if not o["tumour"]]
    assert len(tumours) >= 2 and len(mimics) == 1
    assert all(0.7 < o["elongation"] < 1.4 for o in tumours)  # round in 3D
    assert mimics[0]["elongation"] > 1.8  # tubular along z
    for o in objects:  # one slice through either: a disk of the lesions' radius and contrast
        assert 5.0 < o["radius"] < 11.0 and -75 < o["hu"] < -30
    assert (label == 2).sum() > 0 and set(np.unique(label)) == {0, 1, 2}  # mimics are labelled liver
    image, label, affine = liver_phantom(1, LiverPhantomSpec(spacing_xy_mm=(2.0, 2.0), spacing_z_mm=(3.0, 3.0), noise_hu=(0.0, 0.0)))
    default = _dark_objects(image, label, np.abs(np.diag(affine)[:3]))
    assert not any(o["elongation"] > 1.8 and not o["tumour"] for o in default)  # off by default: no dark tubes
    with pytest.raises(ValueError, match="lesion_shape"):
        liver_phantom(1, LiverPhantomSpec(lesion_shape="cube"))
