"""IVDM3Seg (MICCAI 2018 intervertebral disc challenge) read in place: ``data.layout: ivdm3seg``.

What we verified about the release (public dataset cards and code that reads the files; we could not
download the data itself, which needs a registration):

- The training release holds 16 data sets (8 subjects, each scanned at two stages of a bed-rest study),
  one folder per data set::

      01/01_fat.nii  01/01_inn.nii  01/01_opp.nii  01/01_wat.nii  01/01_Labels.nii
      ...
      16/16_fat.nii  ...            16/16_Labels.nii

  ``fat``/``inn``/``opp``/``wat`` are the Dixon fat, in-phase, opposed-phase and water images (the
  authors' loader stacks them in that order); ``Labels`` is the binary disc mask (7 discs, T11-L5).
  Volumes are 36 sagittal slices of 256 x 256 voxels, 2 mm x 1.25 mm x 1.25 mm, uncompressed ``.nii``.
- Re-packaged copies put every image in one folder and the masks in another (``dataset/01_fat.nii`` ...,
  ``label/01_Labels.nii`` ...), and the on-site test data names cases ``A1``, ``H1`` ... with a hyphen
  before the mask (``A1-Labels.nii``) and masks under a separate ``labels/`` tree.

So the loader searches the folder recursively and accepts, case-insensitively: any case id; ``_`` or
``-`` before the modality or ``Labels``/``Label``; ``.nii`` or ``.nii.gz`` (or NRRD/MHA); images and
masks in the same or in different folders. A case without a mask is unlabelled (prediction only). A case
with a missing modality, or two files for the same case and modality, is an error naming them.

One more thing reported by others and not checked by us: one training mask (data set 16) was said to
have a header that does not match its images by several millimetres. medseg's geometry check then
refuses that case with an error naming the mask; fix its header or leave the case out.
"""

from __future__ import annotations

import re
from pathlib import Path

from medseg.data.layouts import Case
from medseg.data.registry import register_layout
from medseg.errors import MedsegInputError
from medseg.io.image_io import case_name, is_image_file

#: modality order of the release and of the authors' loader (IVD-Net's input channels)
IVDM3SEG_MODALITIES = ("fat", "inn", "opp", "wat")
_NAME = re.compile(r"^(?P<case>.+?)[_-](?P<kind>fat|inn|opp|wat|labels?)$", re.IGNORECASE)


def _scan(root: Path) -> dict[str, dict[str, Path]]:
    """``{case: {"fat": path, ..., "label": path}}`` from every matching file under ``root``."""
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name.startswith(".") or not is_image_file(path):
            continue
        match = _NAME.match(case_name(path))
        if match is None:
            continue
        kind = match["kind"].lower()
        kind = "label" if kind.startswith("label") else kind
        files = found.setdefault(match["case"], {})
        if kind in files:
            raise MedsegInputError(path, f"second file for case '{match['case']}' {kind} (the first is {files[kind]})")
        files[kind] = path
    return found


@register_layout("ivdm3seg")
def load_ivdm3seg(root: str | Path) -> list[Case]:
    """Cases of an IVDM3Seg folder: images in the order fat, inn, opp, wat, and the disc mask.

    Args:
        root: the unpacked release (any of the layouts in the module docstring).

    Returns:
        Cases sorted by id, ``{"case": "01", "image": [fat, inn, opp, wat], "label": mask or None}``.

    Raises:
        MedsegInputError: no IVDM3Seg files, a case missing a modality, or duplicate files.
    """
    root = Path(root)
    if not root.is_dir():
        raise MedsegInputError(root, "IVDM3Seg folder not found")
    found = _scan(root)
    if not found:
        raise MedsegInputError(
            root, "holds no IVDM3Seg files (expected NN_fat.nii, NN_inn.nii, NN_opp.nii, NN_wat.nii and NN_Labels.nii)"
        )
    cases = []
    for case, files in sorted(found.items()):
        missing = [m for m in IVDM3SEG_MODALITIES if m not in files]
        if missing:
            anchor = next(iter(files.values()))
            raise MedsegInputError(anchor.parent, f"case '{case}' has no {', '.join(missing)} image ({case}_{missing[0]}.nii)")
        label = files.get("label")
        cases.append({"case": case, "image": [str(files[m]) for m in IVDM3SEG_MODALITIES], "label": str(label) if label else None})
    return cases
