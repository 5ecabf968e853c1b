"""The predictor: file -> preprocessing -> sliding window -> geometry restore -> label map.

Every image that leaves the predictor has its input's shape and affine: the network sees the canonical
orientation and target spacing of the model package, and its probabilities are mapped back with the
inverse of the same MONAI spatial transforms (probabilities are resampled before the argmax).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from medseg.inference.backends import select_backend
from medseg.inference.engine import WindowEngine, window_chunks
from medseg.inference.plan import CaseShapes, EngineProfile, MemoryPlan, Stitching, grid_shape, make_plan, probe_workspace, resident_bytes
from medseg.inference.restore import needs_resampling, reorient_labels, restore_labels
from medseg.io.geometry import Geometry
from medseg.io.image_io import check_output_geometry, read_geometry
from medseg.model.package import ModelPackage
from medseg.transforms.loading import load_case_arrays
from medseg.transforms.presets import IMAGE, intensity_transforms, spatial_transforms
from medseg.transforms.slice_context import slice_context_transforms

T = TypeVar("T")


@dataclass
class Prediction:
    """One case's result in its input geometry.

    Attributes:
        labels: ``(I, J, K)`` label map (the head's ``label_dtype``: uint8, uint16 above 255).
        probabilities: ``(I, J, K, P)`` float32 when requested, else ``None``.
        geometry: the input geometry (what every output is written in).
        timings: seconds per phase (read, preprocess, network, restore).
    """

    labels: np.ndarray
    probabilities: np.ndarray | None
    geometry: Geometry
    timings: dict[str, float] = field(default_factory=dict)
    #: extra facts about the run, e.g. a cascade's ``roi_box`` (``[[start, stop], ...]`` per axis)
    info: dict[str, Any] = field(default_factory=dict)


class Predictor:
    """Runs a model package on images, in their own geometry.

    Args:
        package: a loaded :class:`~medseg.model.package.ModelPackage`.
        device: where the network runs.
        overlap / sw_batch_size / tta: sliding-window settings (default: the package's).
        on_windows: progress callback, called with the number of windows processed.
        on_start: called once per case with the total number of windows (progress totals).

        stitch: ``auto`` (the plan decides) | ``device`` | ``host``: where the window engine accumulates.
        accumulate: ``auto`` | ``float32`` | ``float16`` | ``bfloat16``: the accumulator's dtype.
        compile: ``torch.compile`` the network (first-call cost in ``engine.compile_seconds``).
        backend: ``torch`` | ``openvino`` | ``onnxruntime`` | ``auto`` (:mod:`medseg.inference.backends`): what runs
            the network inside the same window engine; ``auto`` falls back to PyTorch when the export fails
            (``backend_note`` says why). ``backend`` is the one in use.

    ``last_plan`` is the :class:`~medseg.inference.plan.MemoryPlan` of the last case, as run (a frozen value:
    an out-of-memory fallback to host stitching is recorded in a new plan).

    Example:
        >>> predictor = Predictor(load_model_package("model/"), torch.device("cpu"))  # doctest: +SKIP
        >>> result = predictor.predict_files(["scan.nii.gz"])  # doctest: +SKIP
    """

    def __init__(
        self,
        package: ModelPackage,
        device: torch.device,
        overlap: float | None = None,
        sw_batch_size: int | None = None,
        tta: bool | None = None,
        on_windows: Callable[[int], None] | None = None,
        on_start: Callable[[int], None] | None = None,
        *,
        stitch: str = "auto",
        accumulate: str = "auto",
        compile: bool = False,
        backend: str = "torch",
    ) -> None:
        manifest = package.manifest
        package.head.check_segmentation()
        self.package = package
        self.head = package.head
        self.device = device
        self.network = package.network.to(device).eval()
        self.overlap = manifest.inference.overlap if overlap is None else overlap
        self.sw_batch_size = manifest.inference.sw_batch_size if sw_batch_size is None else sw_batch_size
        self.tta = manifest.inference.tta if tta is None else tta
        self.roi_size = tuple(manifest.patch_size)
        self.spatial = Compose(spatial_transforms(manifest.preprocess, [IMAGE]))
        self.intensity = Compose(intensity_transforms(manifest.preprocess, [IMAGE]))
        self.slice_context = Compose(slice_context_transforms(manifest.network, [IMAGE]))
        self.on_windows = on_windows
        self.on_start = on_start
        #: told the name of each phase after the network (``restoring to the input geometry``): progress text
        self.on_phase: Callable[[str], None] | None = None
        self.stitch, self.accumulate = stitch, accumulate
        self.last_plan: MemoryPlan | None = None
        self._profile: EngineProfile | None = None
        self._compile_reported = False
        self.backend, self.backend_note, runner = select_backend(package, backend, device, self.roi_size)
        self.engine = WindowEngine(
            self.network, self.head, device, self.roi_size, self.overlap, self.sw_batch_size, self.tta,
            amp=device.type == "cuda", compile=compile,
            on_windows=lambda n: self.on_windows(n) if self.on_windows is not None else None, runner=runner,
            chunks=window_chunks(manifest.inference, self.network, self.head, self.roi_size),
        )
        self.cascade = None
        if package.localiser is not None and manifest.roi is not None:
            from medseg.inference.cascade import RoiCascade

            self.cascade = RoiCascade(manifest.roi, Predictor(package.localiser, device, sw_batch_size=sw_batch_size, backend=backend))

    def preprocess(self, image: MetaTensor) -> MetaTensor:
        """``(C, I, J, K)`` image in its own grid -> network grid (canonical orientation, target spacing)."""
        data = self.slice_context(self.intensity(self.spatial({IMAGE: image})))
        return data[IMAGE]

    def windows(self, preprocessed: torch.Tensor) -> int:
        """How many windows a prediction of this preprocessed image visits (progress totals)."""
        return self.engine.windows(preprocessed.shape[1:])

    def _network_input(self, preprocessed: torch.Tensor, place: Stitching) -> torch.Tensor:
        x = torch.as_tensor(preprocessed)[None]
        if self.device.type == "cuda" and place.device.type == "cuda":
            return x.pin_memory().to(self.device, non_blocking=True)  # windows are then cut on the GPU
        return x

    def _run(self, plan: MemoryPlan, fn: Callable[[torch.Tensor, Stitching], T], preprocessed: torch.Tensor) -> tuple[T, MemoryPlan]:
        """Run ``fn`` on the network input with the plan's stitching; the returned plan records any fallback."""
        result, note = self.engine.run(plan.stitching(self.device), lambda place: fn(self._network_input(preprocessed, place), place))
        return result, (plan if note is None else replace(plan, fallback=note))

    def network_probabilities(self, preprocessed: torch.Tensor, plan: MemoryPlan) -> tuple[torch.Tensor, MemoryPlan]:
        """``(C, *spatial)`` on the network grid -> ``(P, *spatial)`` probabilities on the same grid (on the
        stitching device, in the accumulation dtype), and the plan as run."""
        probs, plan = self._run(plan, self.engine.probabilities, preprocessed)
        return probs[0], plan

    def network_labels(self, preprocessed: torch.Tensor, plan: MemoryPlan) -> tuple[torch.Tensor, MemoryPlan]:
        """``(C, *spatial)`` on the network grid -> ``(*spatial)`` labels on the host (argmax on the device)."""
        labels, plan = self._run(plan, self.engine.labels, preprocessed)
        return labels[0], plan

    def profile(self) -> EngineProfile:
        """The engine's costs for this package (one probe of the network, done once)."""
        if self._profile is None:
            channels = self.package.manifest.network.input_channels(len(self.package.manifest.modalities))
            resident = resident_bytes()  # PyTorch frees the activations after the probe; a backend's arena stays
            workspace, outputs = probe_workspace(self.network, channels, self.roi_size, self.sw_batch_size, self.device, self.engine.amp, self.engine.runner)
            self._profile = EngineProfile(resident=resident if self.engine.runner is None else resident_bytes(),
                roi=self.roi_size, overlap=self.overlap, sw_batch_size=self.sw_batch_size, passes=self.engine.passes,
                outputs=outputs, probabilities=len(self.head.probability_names()), workspace=workspace,
                parameters=sum(p.numel() * p.element_size() for p in self.network.parameters()), slab_voxels=self.engine.slab_voxels,
                chunks=self.engine.chunks,
            )
        return self._profile

    def plan(self, case: CaseShapes) -> MemoryPlan:
        """Memory plan of one case (see :mod:`medseg.inference.plan`): where the engine stitches and in which dtype."""
        free = torch.cuda.mem_get_info(self.device)[0] if self.device.type == "cuda" else None
        return make_plan(case, replace(self.profile(), slab_voxels=self.engine.slab_voxels), self.device, free, self.stitch, self.accumulate)

    def plan_files(self, images: Sequence[str | Path], keep_probabilities: bool = False) -> MemoryPlan:
        """The plan of one case from its headers only (``medseg predict --plan``; no voxels are read)."""
        geometry = read_geometry(images[0])
        spatial = tuple(geometry.shape[:3])
        channels = len(images) if len(images) > 1 else (int(geometry.shape[3]) if len(geometry.shape) > 3 else 1)
        grid = grid_shape(self.spatial.transforms, spatial, geometry.affine, channels)
        resample = self.package.manifest.preprocess.target_spacing is not None
        return self.plan(CaseShapes(spatial, grid, channels, resample, keep_probabilities))

    def restore(self, probabilities: torch.Tensor, preprocessed: MetaTensor) -> MetaTensor:
        """Map network-grid probabilities back to the input grid (inverse spacing, then orientation)."""
        out = MetaTensor(probabilities.float().cpu(), meta=copy.deepcopy(preprocessed.meta))  # meta holds the affine
        out.applied_operations = copy.deepcopy(preprocessed.applied_operations)
        return self.spatial.inverse({IMAGE: out})[IMAGE]

    def input_grid_probabilities(
        self, image: MetaTensor, geometry: Geometry
    ) -> tuple[torch.Tensor, dict[str, float], dict[str, Any]]:
        """``(P, I, J, K)`` probabilities in the input grid, timings and info; through the ROI cascade when the
        package has a localiser (see :mod:`medseg.inference.cascade`)."""
        if self.cascade is not None:
            return self.cascade.probabilities(self, image, geometry)
        return (*self.whole_image_probabilities(image, geometry), {})

    def whole_image_probabilities(self, image: MetaTensor, geometry: Geometry) -> tuple[torch.Tensor, dict[str, float]]:
        """Preprocess, sliding window and restore of the whole ``(C, I, J, K)`` image: ``(P, I, J, K)``, timings
        (float probabilities in the input grid: the cascade's path; :meth:`predict_image` avoids them)."""
        t0 = time.perf_counter()
        preprocessed = self.preprocess(image)
        resample = needs_resampling(preprocessed)
        plan = self.plan(CaseShapes(tuple(image.shape[1:]), tuple(preprocessed.shape[1:]), image.shape[0], bool(resample), True))
        if self.on_start is not None:
            self.on_start(self.windows(preprocessed))
        t1 = time.perf_counter()
        probs, self.last_plan = self.network_probabilities(preprocessed, plan)
        t2 = time.perf_counter()
        restored = self.restore(probs, preprocessed)
        check_output_geometry(restored.permute(1, 2, 3, 0), geometry, "restored probabilities")
        return restored.as_tensor(), {"preprocess": t1 - t0, "network": t2 - t1, "restore": time.perf_counter() - t2}

    def predict_image(self, image: MetaTensor, geometry: Geometry, keep_probabilities: bool = False) -> Prediction:
        """Predict an already loaded ``(C, I, J, K)`` image with its geometry.

        Without a cascade, labels are made without full-resolution float probabilities on the host: argmax on
        the device then orientation only, or slab-wise resampling with argmax on the fly (see
        :mod:`medseg.inference.restore`)."""
        if self.cascade is not None:
            return self._predict_through_cascade(image, geometry, keep_probabilities)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        preprocessed = self.preprocess(image)
        resample = needs_resampling(preprocessed)
        plan = self.plan(CaseShapes(tuple(image.shape[1:]), tuple(preprocessed.shape[1:]), image.shape[0], bool(resample), keep_probabilities))
        if self.on_start is not None:
            self.on_start(self.windows(preprocessed))
        t1 = time.perf_counter()
        probabilities = None
        labels: np.ndarray | None
        if keep_probabilities or resample is None:  # MONAI's whole-volume inverse of the float probabilities
            probs, plan = self.network_probabilities(preprocessed, plan)
            t2 = self._restoring()
            restored = self.restore(probs, preprocessed)
            check_output_geometry(restored.permute(1, 2, 3, 0), geometry, "restored probabilities")
            labels = self.head.to_labels(restored.as_tensor()[None])[0].numpy()
            probabilities = np.moveaxis(restored.numpy(), 0, -1).astype(np.float32) if keep_probabilities else None
        elif resample:  # probabilities resampled slab by slab, argmax on the fly
            probs, plan = self.network_probabilities(preprocessed, plan)
            t2 = self._restoring()
            labels = restore_labels(probs, preprocessed, self.head, self.head.torch_label_dtype, self.engine.slab_voxels)
            del probs
        else:  # orientation only: argmax on the network grid, then flip/permute the labels back
            grid_labels, plan = self.network_labels(preprocessed, plan)
            t2 = self._restoring()
            labels = reorient_labels(grid_labels, preprocessed, preprocessed.applied_operations[0], preprocessed.affine)
        assert labels is not None
        if labels.shape != tuple(geometry.shape[:3]):
            raise RuntimeError(f"restored labels {labels.shape} != input {geometry.shape[:3]}")  # the geometry contract
        t3 = time.perf_counter()
        self.last_plan = plan
        timings.update(preprocess=t1 - t0, network=t2 - t1, restore=t3 - t2)
        if self.engine.compile_seconds is not None and not self._compile_reported:  # torch.compile's first call
            timings["compile_first_batch"], self._compile_reported = self.engine.compile_seconds, True
        labels = labels.astype(self.head.label_dtype, copy=False)
        return Prediction(labels, probabilities, geometry, timings)

    def _restoring(self) -> float:
        """Announce the restore phase (progress); returns its start time."""
        if self.on_phase is not None:
            self.on_phase("restoring to the input geometry")
        return time.perf_counter()

    def _predict_through_cascade(self, image: MetaTensor, geometry: Geometry, keep_probabilities: bool) -> Prediction:
        """The cascade's float probabilities in the input grid, decoded by the head on the whole volume."""
        probs, timings, info = self.input_grid_probabilities(image, geometry)
        t0 = time.perf_counter()
        labels = self.head.to_labels(probs[None])[0].cpu().numpy().astype(self.head.label_dtype)
        timings["labels"] = time.perf_counter() - t0
        probabilities = np.moveaxis(probs.cpu().numpy(), 0, -1).astype(np.float32) if keep_probabilities else None
        return Prediction(labels, probabilities, geometry, timings, info)

    def load(self, images: Sequence[str | Path]) -> tuple[MetaTensor, Geometry]:
        """Read the modalities of one case (checked against the package's modality count)."""
        image, _, geometry = load_case_arrays(images, None, self.package.manifest.modalities)
        return image, geometry

    def predict_files(self, images: Sequence[str | Path], keep_probabilities: bool = False) -> Prediction:
        """Read one case (one file per modality, or one 4D file) and predict it."""
        t0 = time.perf_counter()
        image, geometry = self.load(images)
        read_time = time.perf_counter() - t0
        result = self.predict_image(image, geometry, keep_probabilities)
        result.timings = {"read": read_time, **result.timings}
        return result
