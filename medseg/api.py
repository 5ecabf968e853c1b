"""The public Python API: a thin face over the code the CLI runs.

Example::

    import medseg
    model = medseg.load_model("runs/demo/model")
    result = model.predict("scan.nii.gz")        # a path, a nibabel or SimpleITK image, or a NumPy array (+ affine)
    result.labels, result.probabilities, result.affine
    result.save("mask.nii.gz")
    medseg.train("pipelines/demo.yaml", out="runs/demo")
    medseg.evaluate("mask.nii.gz", "reference.nii.gz")
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg.device import resolve_device
from medseg.engine.run import train_pipeline
from medseg.errors import MedsegInputError
from medseg.inference.predictor import Prediction, Predictor
from medseg.io.geometry import Geometry, itk_to_ras_affine
from medseg.io.image_io import case_name, write_image
from medseg.metrics.evaluate import evaluate_arrays, read_pair
from medseg.model.package import ModelPackage, load_model_package
from medseg.transforms.loading import to_metatensor

#: what ``Model.predict`` takes: a file path (or one per modality), a nibabel or SimpleITK image, or an array
ImageLike = Any


@dataclass
class Result:
    """One prediction in the input's grid.

    Attributes:
        labels: ``(I, J, K)`` label map (uint8, uint16 above 255 labels).
        probabilities: ``(I, J, K, P)`` float32 (``predict(..., probabilities=True)``), else ``None``.
        geometry: the input's geometry; ``affine`` is its 4x4 voxel-to-RAS (mm) matrix.
        label_names: ``{value: name}`` of the model.
    """

    labels: np.ndarray
    probabilities: np.ndarray | None
    geometry: Geometry
    label_names: dict[int, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def affine(self) -> np.ndarray:
        return self.geometry.affine

    def volumes_ml(self) -> dict[str, float]:
        """Volume in millilitres of each foreground label, by name."""
        voxel_ml = float(np.prod(self.geometry.spacing)) / 1000.0
        counts = np.bincount(self.labels.ravel().astype(np.int64), minlength=max(self.label_names, default=0) + 1)
        return {name: float(counts[v]) * voxel_ml for v, name in self.label_names.items() if v != 0}

    def save(self, path: str | Path) -> Path:
        """Write the label map (NIfTI, NRRD, MHA by extension) in the input's geometry, atomically."""
        return write_image(path, self.labels, self.geometry, "label")

    def save_probabilities(self, path: str | Path) -> Path:
        """Write the probabilities (channels last) in the input's geometry."""
        if self.probabilities is None:
            raise MedsegInputError(path, "no probabilities: predict with probabilities=True")
        return write_image(path, self.probabilities, self.geometry, "vector")


class Model:
    """A loaded model package, ready to predict (see :func:`load_model`)."""

    def __init__(self, package: ModelPackage, predictor: Predictor) -> None:
        self.package = package
        self.predictor = predictor

    @property
    def labels(self) -> dict[int, str]:
        return dict(self.package.manifest.labels)

    @property
    def modalities(self) -> list[str]:
        return list(self.package.manifest.modalities)

    def __repr__(self) -> str:
        m = self.package.manifest
        return f"Model({m.name!r}, network={m.network.name!r}, labels={self.labels}, device={self.predictor.device})"

    def predict(self, image: ImageLike, affine: np.ndarray | None = None, *, probabilities: bool = False) -> Result:
        """Segment one case; the result lies in the input's grid (shape, affine, voxel size).

        Args:
            image: a path (or a list of paths, one per modality, in the model's order), a nibabel image, a
                SimpleITK image, or a NumPy array ``(I, J, K)`` / ``(I, J, K, C)`` (channels last).
            affine: the array's 4x4 voxel-to-RAS (mm) matrix; without it an array is taken as 1 mm RAS (warned once).
            probabilities: also return the ``(I, J, K, P)`` probabilities.
        """
        if isinstance(image, (str, Path)) or (isinstance(image, Sequence) and not isinstance(image, np.ndarray)):
            paths = [image] if isinstance(image, (str, Path)) else list(image)
            return self._result(self.predictor.predict_files(paths, probabilities))
        array, geometry = as_array(image, affine)
        channels = array[None] if array.ndim == 3 else np.moveaxis(array, -1, 0)
        prediction = self.predictor.predict_image(to_metatensor(channels.astype(np.float32), geometry), geometry, probabilities)
        return self._result(prediction)

    def _result(self, prediction: Prediction) -> Result:
        return Result(prediction.labels, prediction.probabilities, prediction.geometry, self.labels, prediction.timings)


def as_array(image: ImageLike, affine: np.ndarray | None = None) -> tuple[np.ndarray, Geometry]:
    """``(array (I, J, K[, C]), Geometry)`` of a nibabel image, a SimpleITK image or a NumPy array (+ affine)."""
    if hasattr(image, "affine") and hasattr(image, "dataobj"):  # nibabel
        array = np.asanyarray(image.get_fdata(dtype=np.float32))
        header = image.header
        codes = (int(header["qform_code"]), int(header["sform_code"])) if "qform_code" in header else (1, 1)
        return array, Geometry(tuple(array.shape[:3]), np.asarray(image.affine, dtype=np.float64), *codes, None, "nibabel image")
    if hasattr(image, "GetSpacing") and hasattr(image, "GetDirection"):  # SimpleITK
        import SimpleITK as sitk

        array = np.moveaxis(sitk.GetArrayFromImage(image), (0, 1, 2), (2, 1, 0))  # (K, J, I[, C]) -> (I, J, K[, C])
        ras = itk_to_ras_affine(image.GetSpacing(), image.GetOrigin(), image.GetDirection())
        return np.ascontiguousarray(array), Geometry(tuple(array.shape[:3]), ras, 1, 1, None, "SimpleITK image")
    array = np.asarray(image)
    if array.ndim not in (3, 4):
        raise MedsegInputError(None, f"expected a 3D array (I, J, K) or (I, J, K, C), got shape {array.shape}")
    if affine is None:
        warnings.warn("medseg: no affine given with the array; taking it as 1 mm voxels in RAS orientation", stacklevel=3)
        affine = np.eye(4)
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise MedsegInputError(None, f"affine must be 4x4, got shape {affine.shape}")
    return array, Geometry(tuple(array.shape[:3]), affine, 1, 1, None, "array")


def load_model(path: str | Path, device: str = "auto", **settings: Any) -> Model:
    """Load a model package (a folder with ``medseg.json`` and ``model.safetensors``) on the best device.

    Args:
        device: ``auto`` (CUDA, then Apple MPS, then CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        **settings: predictor settings, e.g. ``tta=True``, ``overlap=0.5``, ``sw_batch_size=4``.
    """
    dev, _ = resolve_device(device)
    package = load_model_package(path, dev)
    return Model(package, Predictor(package, dev, **settings))


def train(pipeline: str | Path, out: str | Path, *, overrides: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
    """Train a pipeline YAML into the run folder ``out`` (what ``medseg train`` does); returns the run summary.

    ``overrides``: dotted keys set before validation, e.g. ``{"train.epochs": 5}``; ``options``: ``device``,
    ``resume``, ``epochs``, ``force``, ``stage``, ``progress``.
    """
    return train_pipeline(pipeline, out, overrides=overrides, **options)


def evaluate(
    prediction: str | Path | np.ndarray,
    reference: str | Path | np.ndarray,
    labels: Sequence[int] | None = None,
    spacing: Sequence[float] | None = None,
    tolerance_mm: float = 1.0,
) -> list[dict[str, Any]]:
    """Dice, IoU, HD95, surface Dice and volumes per label of one case (the rows ``medseg evaluate`` writes).

    Files are read in their geometry (which must agree); arrays need ``spacing`` (default 1 mm).
    """
    if isinstance(prediction, (str, Path)) and isinstance(reference, (str, Path)):
        pred, ref, geometry = read_pair(prediction, reference)
        return evaluate_arrays(pred, ref, geometry.spacing, labels, tolerance_mm, case_name(reference))
    pred, ref = np.asarray(prediction), np.asarray(reference)
    return evaluate_arrays(pred, ref, tuple(spacing or (1.0, 1.0, 1.0)), labels, tolerance_mm)


__all__ = ["Model", "Result", "as_array", "evaluate", "load_model", "train"]
