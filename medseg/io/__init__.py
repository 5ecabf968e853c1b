"""Geometry-safe image I/O (nibabel for NIfTI, SimpleITK for NRRD/MHA/MHD) and atomic outputs."""

from __future__ import annotations

from medseg.io import fastgz
from medseg.io.atomic import atomic_dir, atomic_path, check_output_path, ensure_writable_dir, write_json, write_text
from medseg.io.geometry import Geometry
from medseg.io.image_io import (
    IMAGE_SUFFIXES,
    case_name,
    check_output_geometry,
    is_image_file,
    read_geometry,
    read_image,
    read_modalities,
    write_image,
)

fastgz.enable()  # ISA-L gzip for .nii.gz when the isal package is installed (same files, faster)

__all__ = [
    "IMAGE_SUFFIXES",
    "Geometry",
    "atomic_dir",
    "atomic_path",
    "case_name",
    "check_output_geometry",
    "check_output_path",
    "ensure_writable_dir",
    "is_image_file",
    "read_geometry",
    "read_image",
    "read_modalities",
    "write_image",
    "write_json",
    "write_text",
]
