"""Reading a case for ``medseg predict``: image files through the predictor's loader, a DICOM series through
SimpleITK. Which cases an input names (files, a DICOM folder, a folder of cases, a list file) is
:mod:`medseg.data.inputs` (shared with ``medseg check`` and ``medseg info``); its names are re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from monai.data import MetaTensor

from medseg.data.inputs import (
    LIST_SUFFIXES,
    CaseSource,
    batch_cases,
    folder_cases,
    is_list_file,
    layout_cases,
    list_file_cases,
    single_case,
)
from medseg.errors import MedsegInputError
from medseg.inference.predictor import Predictor
from medseg.io.dicom import DicomSeries, read_dicom_series
from medseg.io.geometry import Geometry
from medseg.transforms.loading import to_metatensor

#: Model modality names that map to a DICOM Modality value (others are not checked).
_DICOM_MODALITY = {"CT": "CT", "MR": "MR", "MRI": "MR", "PT": "PT", "PET": "PT"}


@dataclass
class LoadedCase:
    """A case read into memory: ``image`` ``(C, I, J, K)``, its geometry, and the DICOM series it came from."""

    source: CaseSource
    image: MetaTensor
    geometry: Geometry
    files: list[Path]
    series: DicomSeries | None = None
    warnings: list[str] = field(default_factory=list)


def load_case(predictor: Predictor, source: CaseSource, series_uid: str | None = None) -> LoadedCase:
    """Read a case for ``predictor`` (NIfTI/NRRD/MHA through its loader, DICOM through SimpleITK)."""
    if not source.dicom:
        image, geometry = predictor.load(list(source.paths))
        return LoadedCase(source, image, geometry, list(source.paths))
    modalities = predictor.package.manifest.modalities
    if len(modalities) != 1:
        raise MedsegInputError(source.paths[0], f"a DICOM series is one channel; the model expects {len(modalities)} ({', '.join(modalities)})")
    array, geometry, series = read_dicom_series(source.paths[0], series_uid)
    warnings = []
    expected = _DICOM_MODALITY.get(modalities[0].upper())
    if series.modality and expected and series.modality != expected:
        warnings.append(f"series modality {series.modality} differs from the model's input modality {modalities[0]}")
    return LoadedCase(source, to_metatensor(array[None], geometry), geometry, list(series.files), series, warnings)


__all__ = ["CaseSource", "LIST_SUFFIXES", "LoadedCase", "batch_cases", "folder_cases", "is_list_file", "layout_cases", "list_file_cases", "load_case", "single_case"]
