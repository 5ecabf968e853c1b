"""Registration inference: a fixed and a moving image of any geometry in, the moved image and an
ITK/ANTs displacement field in the fixed image's geometry out.

Pipeline: both images are read, normalised and put on the network grid (the fixed image's frame at the
package's orientation and spacing: :class:`~medseg.transforms.registration.PairGrid`, the training path),
padded to the network's stride (and at least to its training size), registered in one pass, and the
field is cropped back. The network's field ``flow`` (voxels of the network grid, pull-back:
``moved(x) = moving(x + flow(x))``) is then resampled onto the *fixed image's own grid* and expressed
in millimetres in world space; the moved image and label maps are sampled from the *original* moving
image through it (one interpolation; labels nearest neighbour), so they are exactly what ITK gives.

Displacement-field convention (what ``--warp`` writes; ITK, ANTs and SimpleITK read it as is):

- a vector image on the fixed image's grid (same shape, affine, header codes), float32, NIfTI stored
  5D ``(I, J, K, 1, 3)`` with intent ``vector`` (1007), other formats as a 3-component vector image;
- the vector at fixed voxel ``p`` is ``d = T(x) - x`` in millimetres, where ``x`` is the physical point
  of ``p`` and ``T(x)`` the point of the moving image that lands on it (``moved(x) = moving(T(x))``);
- components in ITK's **LPS** physical frame: ``(d_L, d_P, d_S) = (-d_R, -d_A, d_S)`` of nibabel's RAS+
  world (the NIfTI affine is RAS; ITK converts the grid, never the vector values).

So ``sitk.DisplacementFieldTransform`` built from the file (cast to ``sitkVectorFloat64``) and
``sitk.Resample(moving, fixed, transform)`` reproduce the moved image, and
``antsApplyTransforms -r fixed -i moving -t warp.nii.gz`` does the same. ``--inverse-warp`` writes the
reverse field (the network's moving-to-fixed direction) on the moving image's grid, with the same
convention: it maps points of the moving image to the fixed image.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medseg.errors import MedsegInputError, MedsegModelError
from medseg.io.geometry import Geometry
from medseg.io.image_io import read_image
from medseg.metrics.dice import dice
from medseg.metrics.registration import inverse_consistency_error, jacobian_determinant
from medseg.model.package import ModelPackage
from medseg.networks.registry import core_network
from medseg.transforms.loading import to_metatensor
from medseg.transforms.registration import PairGrid, network_size, pad_to

#: sign flips taking a RAS+ vector to ITK's LPS+ frame (and back)
RAS_TO_LPS_SIGNS = np.array([-1.0, -1.0, 1.0], dtype=np.float32)
#: fixed-grid voxels handled at once when resampling fields and images (bounds the memory)
CHUNK_VOXELS = 1 << 22


def sample(volume: torch.Tensor, coords: torch.Tensor, mode: str = "bilinear", padding_mode: str = "zeros") -> torch.Tensor:
    """Values of ``volume`` ``(C, I, J, K)`` at continuous voxel coordinates ``coords`` ``(3, *T)``.

    Linear (``bilinear``) or ``nearest`` interpolation with voxel centres at integer coordinates
    (``align_corners=True``); outside the grid ``zeros`` or the ``border`` value. Returns ``(C, *T)``.
    """
    size = torch.tensor(volume.shape[1:], dtype=coords.dtype, device=coords.device).view(3, *([1] * (coords.ndim - 1)))
    norm = 2.0 * coords / (size - 1).clamp_min(1) - 1.0
    grid = norm.flip(0).movedim(0, -1)[None]  # (1, *T, 3) as (x, y, z) = (K, J, I), what grid_sample wants
    return F.grid_sample(volume[None].float(), grid, mode=mode, padding_mode=padding_mode, align_corners=True)[0]


def _index_slab(shape: Sequence[int], start: int, stop: int, device: torch.device) -> torch.Tensor:
    """``(4, stop - start, J, K)`` homogeneous voxel indices of slab ``start:stop`` along axis 0."""
    axes = [torch.arange(start, stop, device=device, dtype=torch.float64)]
    axes += [torch.arange(int(n), device=device, dtype=torch.float64) for n in shape[1:3]]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"))
    return torch.cat([grid, torch.ones_like(grid[:1])])


def _slabs(shape: Sequence[int]) -> list[tuple[int, int]]:
    step = max(1, CHUNK_VOXELS // max(1, int(shape[1]) * int(shape[2])))
    return [(i, min(i + step, int(shape[0]))) for i in range(0, int(shape[0]), step)]


def _apply(matrix: np.ndarray, points: torch.Tensor) -> torch.Tensor:
    """``matrix`` (3x4 or 3x3) applied to ``(3 or 4, *T)`` points."""
    m = torch.as_tensor(matrix, dtype=points.dtype, device=points.device)
    return torch.einsum("ij,j...->i...", m, points[: m.shape[1]])


def field_on_grid(flow: torch.Tensor, net_affine: np.ndarray, target: Geometry) -> torch.Tensor:
    """World displacement (RAS mm) on ``target``'s grid from a network-grid field.

    Args:
        flow: ``(3, *N)`` pull-back displacement in voxels of the network grid.
        net_affine: the network grid's voxel-to-RAS affine.
        target: the grid to express it on (the fixed image's for ``--warp``).

    Returns:
        ``(3, I, J, K)`` float32: ``d(x) = T(x) - x`` in RAS mm at each target voxel centre (the field is
        extended by its border values outside the network grid).
    """
    net_affine = np.asarray(net_affine, dtype=np.float64)
    to_net = (np.linalg.inv(net_affine) @ np.asarray(target.affine, dtype=np.float64))[:3]
    out = torch.empty((3, *target.shape[:3]), dtype=torch.float32, device=flow.device)
    for start, stop in _slabs(target.shape):
        q = _apply(to_net, _index_slab(target.shape, start, stop, flow.device))
        f = sample(flow.float(), q.float(), "bilinear", "border").double()
        out[:, start:stop] = _apply(net_affine[:3, :3], f).float()
    return out


def warp_volume(
    volume: torch.Tensor, volume_affine: np.ndarray, displacement: torch.Tensor, target: Geometry, labels: bool = False
) -> torch.Tensor:
    """``volume`` ``(C, *S)`` sampled at ``x + d(x)`` for every voxel ``x`` of ``target`` (``d``: RAS mm).

    Linear interpolation (``labels``: nearest neighbour, integer values kept). As ITK's resampler: a
    point within half a voxel outside the last voxel centre takes the border value, one further out 0.
    Returns ``(C, I, J, K)`` on ``target``'s grid.
    """
    world = np.asarray(target.affine, dtype=np.float64)
    to_volume = np.linalg.inv(np.asarray(volume_affine, dtype=np.float64))[:3]
    out = torch.empty((volume.shape[0], *target.shape[:3]), dtype=torch.float32, device=displacement.device)
    for start, stop in _slabs(target.shape):
        points = _apply(world[:3], _index_slab(target.shape, start, stop, displacement.device))
        points = points + displacement[:, start:stop].double()
        coords = _apply(to_volume, torch.cat([points, torch.ones_like(points[:1])]))
        size = torch.tensor(volume.shape[1:], dtype=coords.dtype, device=coords.device).view(3, 1, 1, 1)
        inside = ((coords >= -0.5) & (coords <= size - 0.5)).all(0)
        values = sample(volume, coords.float(), "nearest" if labels else "bilinear", "border")
        out[:, start:stop] = values * inside
    return out.round() if labels else out


def folding_on_grid(displacement: torch.Tensor, geometry: Geometry) -> float:
    """Fraction of ``geometry``'s voxels where ``x -> x + d(x)`` has a non-positive Jacobian determinant.

    ``d`` is ``(3, I, J, K)`` RAS mm; the determinant is computed in voxel units (the same number), in
    slabs with a one-voxel overlap (central differences inside, one-sided at the image faces).
    """
    to_vox = np.linalg.inv(np.asarray(geometry.affine, dtype=np.float64)[:3, :3])
    folded = 0
    n = int(displacement.shape[1])
    for start, stop in _slabs(geometry.shape):
        lo, hi = max(start - 1, 0), min(stop + 1, n)
        d = _apply(to_vox, displacement[:, lo:hi].double()).float()
        det = jacobian_determinant(d[None])[0, start - lo : stop - lo]
        folded += int((det <= 0).sum())
    return folded / float(np.prod(geometry.shape[:3]))


@dataclass
class RegistrationResult:
    """One registration, in the fixed image's geometry (the inverse field in the moving image's).

    Attributes:
        moved: ``(I, J, K)`` float32, the moving image's intensities resampled onto the fixed grid.
        displacement: ``(I, J, K, 3)`` float32, LPS millimetres (the ``--warp`` convention, module docs).
        fixed_geometry / moving_geometry: geometries of the inputs.
        moved_labels: ``(I, J, K)`` warped moving labels (nearest neighbour), when given.
        inverse_displacement: ``(I', J', K', 3)`` on the moving grid, when requested.
        qa: folding fraction, Dice before/after, inverse consistency (mm), grid sizes.
        timings: seconds per phase.
    """

    moved: np.ndarray
    displacement: np.ndarray
    fixed_geometry: Geometry
    moving_geometry: Geometry
    moved_labels: np.ndarray | None = None
    inverse_displacement: np.ndarray | None = None
    qa: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def _to_lps(displacement: torch.Tensor) -> np.ndarray:
    """``(3, I, J, K)`` RAS -> ``(I, J, K, 3)`` LPS float32 numpy."""
    return np.ascontiguousarray(np.moveaxis(displacement.cpu().numpy(), 0, -1) * RAS_TO_LPS_SIGNS, dtype=np.float32)


def label_dice(moved: np.ndarray, fixed: np.ndarray, names: dict[int, str] | None = None) -> dict[str, float]:
    """Dice per label present in either map (background excluded), keyed by name where known."""
    values = sorted((set(np.unique(moved).tolist()) | set(np.unique(fixed).tolist())) - {0})
    scores = dice(moved, fixed, values) if values else {}
    return {(names or {}).get(v, str(v)): s for v, s in scores.items()}


class Registrar:
    """Runs a registration model package on image files.

    Args:
        package: a loaded model package with output kind ``displacement`` (3D, single-channel images).
        device: where the network and the resampling run.

    Example:
        >>> result = Registrar(load_model_package("model/"), torch.device("cpu")).register_files(
        ...     "fixed.nii.gz", "moving.nii.gz")  # doctest: +SKIP
    """

    def __init__(self, package: ModelPackage, device: torch.device) -> None:
        manifest = package.manifest
        kind = manifest.output.kind
        if kind != "displacement":
            raise MedsegModelError(f"{package.path}: not a registration model (output kind '{kind}'); use `medseg predict`")
        kwargs = manifest.network.kwargs
        if int(kwargs.get("spatial_dims", 3)) != 3 or int(kwargs.get("in_channels", 1)) != 1:
            raise MedsegModelError(f"{package.path}: medseg register needs a 3D single-channel registration network")
        self.package = package
        self.device = device
        self.network = package.network.to(device).eval()
        self.grid = PairGrid(manifest.preprocess)
        value = getattr(core_network(self.network), "size_divisor", 1)
        self.divisor = tuple(value) if isinstance(value, (tuple, list)) else int(value)
        self.minimum = tuple(manifest.patch_size)

    @torch.no_grad()
    def network_fields(
        self, fixed: torch.Tensor, moving: torch.Tensor, fixed_geometry: Geometry, moving_geometry: Geometry, inverse: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None, np.ndarray]:
        """``(flow, flow_reverse or None, network-grid affine)``; fields ``(3, *N)`` in network voxels."""
        on_grid = self.grid.pair(
            self.grid.prepare(to_metatensor(fixed.numpy()[None], fixed_geometry)),
            self.grid.prepare(to_metatensor(moving.numpy()[None], moving_geometry)),
        )
        net_affine = np.asarray(on_grid["fixed"].affine, dtype=np.float64)
        shape = tuple(on_grid["fixed"].shape[1:])
        size = network_size(shape, self.minimum, self.divisor)
        f, crop = pad_to(on_grid["fixed"].as_tensor().float(), size)
        m, _ = pad_to(on_grid["moving"].as_tensor().float(), size)
        amp = self.device.type == "cuda"
        with torch.autocast(device_type=self.device.type, enabled=amp):
            out = self.network(f[None].to(self.device), m[None].to(self.device), bidirectional=inverse)
        window = (slice(None), *crop)
        flow = out["flow"][0].float()[window]
        reverse = out["flow_reverse"][0].float()[window] if inverse else None
        return flow, reverse, net_affine

    def register_files(
        self,
        fixed: str | Path,
        moving: str | Path,
        moving_labels: str | Path | None = None,
        fixed_labels: str | Path | None = None,
        inverse: bool = False,
    ) -> RegistrationResult:
        """Register ``moving`` to ``fixed`` (see the module docs for what comes back and in which frame)."""
        t0 = time.perf_counter()
        fixed_array, fixed_geometry = read_image(fixed, "image")
        moving_array, moving_geometry = read_image(moving, "image")
        moving_lab = _read_labels(moving_labels, moving_geometry, moving)
        fixed_lab = _read_labels(fixed_labels, fixed_geometry, fixed)
        t1 = time.perf_counter()
        fixed_t, moving_t = torch.from_numpy(fixed_array), torch.from_numpy(moving_array)
        flow, reverse, net_affine = self.network_fields(fixed_t, moving_t, fixed_geometry, moving_geometry, inverse)
        t2 = time.perf_counter()
        displacement = field_on_grid(flow, net_affine, fixed_geometry)
        moved = warp_volume(moving_t[None].to(self.device), moving_geometry.affine, displacement, fixed_geometry)[0]
        qa: dict[str, Any] = {
            "folding_fraction": folding_on_grid(displacement, fixed_geometry),
            "fixed_voxels": int(np.prod(fixed_geometry.shape[:3])),
            "network_grid": list(flow.shape[1:]),
        }
        result = RegistrationResult(moved.cpu().numpy().astype(np.float32), _to_lps(displacement), fixed_geometry, moving_geometry, qa=qa)
        if moving_lab is not None:
            labels_t = torch.from_numpy(moving_lab.astype(np.float32))[None].to(self.device)
            warped = warp_volume(labels_t, moving_geometry.affine, displacement, fixed_geometry, labels=True)[0]
            result.moved_labels = warped.cpu().numpy().astype(moving_lab.dtype)
            if fixed_lab is not None:
                before = warp_volume(labels_t, moving_geometry.affine, torch.zeros_like(displacement), fixed_geometry, labels=True)[0]
                names = self.package.manifest.labels
                qa["dice_before"] = label_dice(before.cpu().numpy().astype(np.int64), fixed_lab, names)
                qa["dice_after"] = label_dice(result.moved_labels.astype(np.int64), fixed_lab, names)
        if reverse is not None:
            result.inverse_displacement = _to_lps(field_on_grid(reverse, net_affine, moving_geometry))
            spacing = np.linalg.norm(net_affine[:3, :3], axis=0)
            qa["inverse_consistency_mm"] = float(inverse_consistency_error(flow[None], reverse[None], spacing)[0])
        result.timings = {"read": t1 - t0, "network": t2 - t1, "resample": time.perf_counter() - t2}
        return result


def _read_labels(path: str | Path | None, geometry: Geometry, image: str | Path) -> np.ndarray | None:
    if path is None:
        return None
    labels, label_geometry = read_image(path, "label")
    problem = geometry.mismatch(label_geometry, atol=1e-4)
    if problem is not None:
        raise MedsegInputError(path, f"label map does not match its image {Path(image).name}: {problem}")
    return labels


def qa_line(qa: dict[str, Any]) -> str:
    """One line for the terminal: folding, and Dice before -> after / inverse consistency when known."""
    parts = [f"non-positive Jacobian determinant in {100 * qa['folding_fraction']:.3f}% of {qa['fixed_voxels']} voxels"]
    if "dice_after" in qa:
        before, after = qa["dice_before"], qa["dice_after"]
        mean = lambda d: float(np.mean(list(d.values()))) if d else float("nan")  # noqa: E731
        parts.append(f"mean Dice {mean(before):.3f} -> {mean(after):.3f} ({', '.join(after)})")
    if "inverse_consistency_mm" in qa:
        parts.append(f"inverse consistency error {qa['inverse_consistency_mm']:.3f} mm")
    return "QA: " + "; ".join(parts)
