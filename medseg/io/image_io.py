"""Read and write images with the geometry contract.

NIfTI goes through nibabel (header codes kept exactly); NRRD/MHA/MHD through SimpleITK. Arrays are in
the file's voxel order ``(I, J, K[, C])``; world coordinates are RAS+ millimetres (nibabel convention).
Every write is atomic and re-reads the written header to check that its geometry equals the reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import nibabel as nib
import numpy as np

from medseg.errors import MedsegInputError, MedsegOutputError
from medseg.io.atomic import atomic_path, full_suffix
from medseg.io.geometry import AFFINE_ATOL, Geometry, itk_to_ras_affine, ras_affine_to_itk

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
IMAGE_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES

Kind = Literal["image", "label", "vector", "displacement"]


def is_image_file(path: str | Path) -> bool:
    """True for file names medseg can read as images."""
    return full_suffix(path).lower() in IMAGE_SUFFIXES


def case_name(path: str | Path) -> str:
    """File name without its image extension: ``liver_003.nii.gz`` -> ``liver_003``."""
    name = Path(path).name
    suffix = full_suffix(name)
    return name[: -len(suffix)] if suffix and suffix.lower() in IMAGE_SUFFIXES else name


def _check_file(path: Path) -> None:
    if not path.exists():
        raise MedsegInputError(path, "file not found")
    if path.is_dir():
        raise MedsegInputError(path, "is a folder, expected an image file")
    if path.stat().st_size == 0:
        raise MedsegInputError(path, "file is empty (0 bytes)")
    if not is_image_file(path):
        raise MedsegInputError(path, f"unsupported file type; use one of {', '.join(IMAGE_SUFFIXES)}")


def read_geometry(path: str | Path) -> Geometry:
    """Read only the header: shape and affine, without decompressing the voxels."""
    path = Path(path)
    _check_file(path)
    if full_suffix(path).lower() in NIFTI_SUFFIXES:
        img = _load_nifti(path)
        return _nifti_geometry(img, path, tuple(int(s) for s in img.shape))
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise MedsegInputError(path, f"not a readable image ({_first_line(exc)})") from exc
    shape = tuple(int(s) for s in reader.GetSize())
    if len(shape) != 3:
        raise MedsegInputError(path, f"image has {len(shape)} spatial dimensions; expected a 3D volume")
    affine = itk_to_ras_affine(reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection())
    return Geometry(shape, affine, 1, 1, None, str(path))


def read_image(
    path: str | Path, kind: Kind = "image", allow_channels: bool = False, check_finite: bool = True
) -> tuple[np.ndarray, Geometry]:
    """Read an image (float32) or label map (integer) and its geometry.

    Args:
        path: ``.nii``/``.nii.gz`` (nibabel) or ``.nrrd``/``.nhdr``/``.mha``/``.mhd`` (SimpleITK).
        kind: ``"image"`` (float32, non-finite voxels checked) or ``"label"`` (integer, non-negative).
        allow_channels: accept a 4D file ``(I, J, K, C)`` (channels last, as in the Decathlon).
        check_finite: raise on NaN/inf voxels (``medseg info``/``check`` turn it off to report them).

    Returns:
        ``(array, geometry)`` with ``array`` of shape ``(I, J, K)`` or ``(I, J, K, C)``.

    Raises:
        MedsegInputError: missing, empty, corrupt or truncated file; wrong dimensionality; a zero-sized
            axis; all voxels NaN/inf; labels that are negative or not integers.
    """
    path = Path(path)
    _check_file(path)
    if full_suffix(path).lower() in NIFTI_SUFFIXES:
        array, geometry = _read_nifti(path)
    else:
        array, geometry = _read_itk(path)
    array = _check_dims(path, array, allow_channels)
    geometry = Geometry(tuple(array.shape[:3]), geometry.affine, geometry.qform_code, geometry.sform_code,
                        geometry.nifti_header, str(path))
    if kind == "label":
        return _as_labels(path, array), geometry
    array = np.asarray(array, dtype=np.float32)
    if check_finite:
        _check_finite(path, array)
    return array, geometry


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _truncated_gzip(path: Path) -> bool:
    """Whether ``path`` is a gzip stream that ends early or is damaged (error path only: reads it all)."""
    import gzip
    import zlib

    if path.suffix.lower() != ".gz":
        return False
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 22):
                pass
    except (EOFError, zlib.error):
        return True
    except OSError as exc:
        return "Not a gzipped file" not in str(exc)
    return False


def _load_nifti(path: Path) -> nib.Nifti1Image:
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for garbage: say what the file is not
        if _truncated_gzip(path):  # ISA-L (medseg.io.fastgz) fails before nibabel sees a header; zlib reads on
            raise MedsegInputError(path, f"cannot read the voxel data: file is truncated or corrupt ({_first_line(exc)})") from exc
        raise MedsegInputError(path, f"not a valid NIfTI file ({_first_line(exc)})") from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise MedsegInputError(path, f"not a NIfTI image ({type(img).__name__})")
    return img


def _nifti_geometry(img: nib.Nifti1Image, path: Path, shape: tuple[int, ...]) -> Geometry:
    header = img.header.copy()
    qcode = int(header["qform_code"])
    scode = int(header["sform_code"])
    return Geometry(shape[:3], np.asarray(img.affine, dtype=np.float64), qcode, scode, header, str(path))


def _read_nifti(path: Path) -> tuple[np.ndarray, Geometry]:
    img = _load_nifti(path)
    if any(int(s) == 0 for s in img.shape):
        raise MedsegInputError(path, f"image has a zero-sized dimension (shape {tuple(img.shape)})")
    try:
        proxy: Any = img.dataobj
        slope, inter = float(getattr(proxy, "slope", 1.0) or 1.0), float(getattr(proxy, "inter", 0.0) or 0.0)
        if slope == 1.0 and inter == 0.0:
            array = np.asanyarray(proxy)
        else:  # scaled (e.g. uint8 with scl_slope): read the stored values once, scale slab by slab into float32
            array = _scaled_float32(np.asanyarray(proxy.get_unscaled()), slope, inter)
    except Exception as exc:
        raise MedsegInputError(path, f"cannot read the voxel data: file is truncated or corrupt ({_first_line(exc)})") from exc
    return np.asarray(array), _nifti_geometry(img, path, tuple(int(s) for s in img.shape))


def _scaled_float32(raw: np.ndarray, slope: float, inter: float) -> np.ndarray:
    """``raw * slope + inter`` as float32, computed in float64 one slab at a time (nibabel's ``get_fdata`` makes a
    whole float64 volume first and, through ``asanyarray``, keeps it: 8x a uint8 volume; here 4x plus a slab)."""
    out = np.empty(raw.shape, dtype=np.float32)
    step = max(1, (1 << 20) // max(1, int(np.prod(raw.shape[1:]))))
    for a in range(0, raw.shape[0], step):
        out[a : a + step] = raw[a : a + step] * slope + inter
    return out


def _read_itk(path: Path) -> tuple[np.ndarray, Geometry]:
    import SimpleITK as sitk

    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise MedsegInputError(path, f"not a readable image or truncated ({_first_line(exc)})") from exc
    if img.GetDimension() != 3:
        raise MedsegInputError(path, f"image has {img.GetDimension()} dimensions; expected a 3D volume")
    array = sitk.GetArrayFromImage(img)  # (K, J, I[, C])
    array = np.moveaxis(array, (0, 1, 2), (2, 1, 0))  # -> (I, J, K[, C])
    affine = itk_to_ras_affine(img.GetSpacing(), img.GetOrigin(), img.GetDirection())
    return np.ascontiguousarray(array), Geometry(tuple(array.shape[:3]), affine, 1, 1, None, str(path))


def _check_dims(path: Path, array: np.ndarray, allow_channels: bool) -> np.ndarray:
    if any(s == 0 for s in array.shape):
        raise MedsegInputError(path, f"image has a zero-sized dimension (shape {array.shape})")
    while array.ndim > 3 and array.shape[-1] == 1:  # (I, J, K, 1) is a 3D image
        array = array[..., 0]
    if array.ndim < 3:
        raise MedsegInputError(path, f"image is {array.ndim}D (shape {array.shape}); expected a 3D volume")
    if array.ndim == 4 and not allow_channels:
        raise MedsegInputError(
            path, f"image is 4D (shape {array.shape}); expected a 3D volume (split the 4th axis into one file per channel)"
        )
    if array.ndim > 4:
        raise MedsegInputError(path, f"image is {array.ndim}D (shape {array.shape}); expected a 3D volume")
    return array


def _check_finite(path: Path, array: np.ndarray) -> None:
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(array.size - np.count_nonzero(finite))
        if bad == array.size:
            raise MedsegInputError(path, "every voxel is NaN or infinite; the image holds no data")
        raise MedsegInputError(path, f"{bad} voxels are NaN or infinite; fix or mask them before use")


def _as_labels(path: Path, array: np.ndarray) -> np.ndarray:
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise MedsegInputError(path, "label map contains NaN or infinite voxels")
        rounded = np.rint(array)
        if not np.allclose(rounded, array, atol=1e-3):
            raise MedsegInputError(path, "label map has non-integer values; is this an image rather than labels?")
        array = rounded
    if array.min() < 0:
        raise MedsegInputError(path, f"label map has negative values (min {array.min()})")
    return array.astype(label_dtype(array), copy=False)


def label_dtype_for(top: int) -> np.dtype:
    """Storage dtype of label maps whose largest value is ``top``: uint8 up to 255, uint16 up to 65535, else int32.

    The one place of this rule: readers, writers, the output heads and the predictor all ask it.
    """
    return np.dtype(np.uint8 if top <= np.iinfo(np.uint8).max else np.uint16 if top <= np.iinfo(np.uint16).max else np.int32)


def label_dtype(array: np.ndarray) -> np.dtype:
    """Storage dtype of the label map ``array`` (:func:`label_dtype_for` its maximum)."""
    return label_dtype_for(int(array.max()) if array.size else 0)


def _output_array(array: Any, kind: Kind) -> np.ndarray:
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if kind == "label":
        if array.size and array.min() < 0:
            raise ValueError("label maps cannot hold negative values")
        return array.astype(label_dtype(array), copy=False)
    return array.astype(np.float32, copy=False)


def check_output_geometry(array: Any, geometry: Geometry, what: str = "output") -> None:
    """Raise if ``array`` (spatial axes first) does not fit ``geometry``; a tensor's own affine is checked too."""
    shape = tuple(np.shape(array)[:3])
    if shape != tuple(geometry.shape[:3]):
        raise MedsegOutputError(f"{what}: shape {shape} does not match the input's {tuple(geometry.shape[:3])}")
    tensor_affine = getattr(array, "affine", None)
    if tensor_affine is not None:
        aff = np.asarray(tensor_affine.detach().cpu() if hasattr(tensor_affine, "detach") else tensor_affine, dtype=np.float64)
        if aff.shape == (4, 4) and not np.allclose(aff, geometry.affine, atol=AFFINE_ATOL, rtol=0):
            raise MedsegOutputError(f"{what}: affine does not match the input's (max diff {np.abs(aff - geometry.affine).max():.3g})")


def write_image(path: str | Path, array: Any, geometry: Geometry, kind: Kind = "label") -> Path:
    """Write ``array`` in ``geometry`` to ``path`` atomically, after checking shape and affine.

    Args:
        path: output file; its extension picks the format (NIfTI via nibabel, others via SimpleITK).
        array: ``(I, J, K)`` or ``(I, J, K, C)`` array or tensor on the reference grid (``C`` for vectors).
        geometry: the reference geometry (normally the input image's).
        kind: ``"label"`` (uint8, uint16 above 255), ``"image"`` or ``"vector"`` (float32), or
            ``"displacement"``: an ``(I, J, K, 3)`` float32 field written as ITK/ANTs read displacement
            fields (NIfTI: 5D ``(I, J, K, 1, 3)`` with the vector intent; other formats: a 3-component
            vector image). The components are stored as given (ITK expects LPS millimetres).

    Raises:
        MedsegOutputError: the array does not fit the geometry, or the written file came out different.
    """
    path = Path(path)
    check_output_geometry(array, geometry, str(path))
    data = _output_array(array, kind)
    suffix = full_suffix(path).lower()
    if suffix not in IMAGE_SUFFIXES:
        raise MedsegOutputError(f"{path}: unsupported output type; use one of {', '.join(IMAGE_SUFFIXES)}")
    with atomic_path(path) as tmp:
        if suffix in NIFTI_SUFFIXES:
            _write_nifti(tmp, data, geometry, kind)
        else:
            _write_itk(tmp, data, geometry, kind)
        written = read_geometry(tmp)
        problem = geometry.mismatch(written)
        if problem is not None:
            raise MedsegOutputError(f"{path}: written geometry differs from the input's: {problem}")
    return path


def _write_nifti(tmp: Path, data: np.ndarray, geometry: Geometry, kind: Kind) -> None:
    if geometry.nifti_header is not None:
        header = geometry.nifti_header.copy()
        header.set_data_dtype(data.dtype)
        # the affine equals the header's best affine, so nibabel keeps qform/sform (and codes) as read
        img = nib.Nifti1Image(data, geometry.affine, header=header)
        img.header["scl_slope"] = np.nan
        img.header["scl_inter"] = np.nan
        img.header["cal_min"] = 0
        img.header["cal_max"] = 0
    else:
        img = nib.Nifti1Image(data, geometry.affine)
        img.set_qform(geometry.affine, code=int(geometry.qform_code) or 1)
        img.set_sform(geometry.affine, code=int(geometry.sform_code) or 1)
    img.header.set_xyzt_units("mm", "sec")
    if kind == "vector":
        img.header.set_intent("vector", (), name="displacement")
    if kind == "displacement":  # ITK reads a 5D (I, J, K, 1, 3) vector-intent NIfTI as a vector image
        img = nib.Nifti1Image(data[:, :, :, None, :], img.affine, header=img.header)
        img.header.set_intent("vector", (), name="displacement")
    nib.save(img, str(tmp))


def _write_itk(tmp: Path, data: np.ndarray, geometry: Geometry, kind: Kind) -> None:
    import SimpleITK as sitk

    array = np.moveaxis(data, (0, 1, 2), (2, 1, 0))
    img = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=data.ndim == 4)
    spacing, origin, direction = ras_affine_to_itk(geometry.affine)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    sitk.WriteImage(img, str(tmp), useCompression=True)


def read_modalities(paths: list[str | Path], names: list[str] | None = None) -> tuple[np.ndarray, Geometry]:
    """Read co-registered single-channel images into one ``(C, I, J, K)`` float32 array.

    Raises:
        MedsegInputError: naming the modality whose geometry differs from the first one's.
    """
    arrays, reference = [], None
    for index, path in enumerate(paths):
        array, geometry = read_image(path, "image")
        label = names[index] if names and index < len(names) else f"channel {index}"
        if reference is None:
            reference = geometry
        else:
            problem = reference.mismatch(geometry, atol=1e-4)
            if problem is not None:
                raise MedsegInputError(path, f"modality '{label}' does not share the geometry of {Path(paths[0]).name}: {problem}")
        arrays.append(array)
    assert reference is not None, "at least one path"
    return np.stack(arrays, axis=0), reference
