"""Two network inputs ("views") from one training crop, for mutual training (cross pseudo supervision).

Gu et al. (DSAIF, MedIA 2024; code GuGuLL123/DSAIF-SEMI ``dataset/semi.py``): per crop, with probability
``prob`` the two networks get differently perturbed views, otherwise both get the crop as it is. A
perturbed view gets its own gamma contrast (probability ``gamma_prob``), then the perturbation:

* ``dsaif``: one network the Max-tree filtered crop, the other the Min-tree one (swapped with
  ``swap_prob``), filters of :mod:`medseg.transforms.tree_filter`;
* ``noise``: independent Gaussian noise per view (the classic consistency perturbation);
* ``plain``: nothing more (gamma and rotation only), the unfiltered control.

With ``bezier`` (default on, the released configuration's ``bezier_type: [3, 3]``) each network's input
starts from its own one of three intensity remappings of the crop (identity or one of two Bezier curves,
drawn per view and per sample, :mod:`medseg.transforms.intensity_curves`), whether or not the views are
perturbed; the perturbation then acts on the remapped crop (scope *volume*: the remapping is applied to the
filtered crop, as the gamma). With ``rotate_axes`` the second view is also turned by ``k`` x 90 degrees (``k``
uniform in 0..3) in those spatial axes; the trainer turns the second network's output back by ``-k``.

Checked against the code (3D path of the released Pancreas configuration): the gamma is skimage's
``x ** gamma`` on the crop scaled to [0, 1) (imgaug ``GammaContrast((0.5, 1.5))`` on a float image), drawn per
view with p = 0.5 and only for perturbed views, as here; network 2's input is rotated by k x 90 degrees in
array axes (1, 2) (``scipy.ndimage.rotate``, exact for square planes) and its output rotated back by
torchvision's ``rotate(-k 90)`` in the same axes, i.e. ``torch.rot90`` by ``-k``, as here (rotating before
or after the filter is the same, see ``tree_filter``). Differences kept out: the code's 2D path never rotates
(``random.random() > 1``; set ``rotate: false``), and its LA path rotates the input in axes (0, 1) but the
output back in (1, 2). All three perturbations share
the gamma, the rotation and the random draws, so they differ only in the filter/noise: a like-for-like
comparison.

Filter scope (``dsaif``): *patch* filters each crop (paper; the gamma comes before the 8-bit quantisation
and the crop is quantised over the whole volume's range, as the 3D code does); *volume* reads views that
:class:`VolumeTreeFilterd` computed once per preprocessed volume (cacheable) and cropped at the same place,
applying the gamma afterwards. The two differ only where components cross the crop border (the area
and the sibling structure of a component are those of the whole volume) and in the order of gamma and
quantisation; the filters commute with flips and 90 degree rotations, so cropping/flipping/rotating
after filtering is exact.

Example:
    >>> import torch
    >>> views = MutualViewsd("dsaif", prob=1.0, min_area=4)
    >>> d = IntensityRanged()({"image": torch.rand(1, 8, 8, 8)})
    >>> out = views(d)
    >>> out["view1"].shape, out["view2"].shape, int(out["rot90"])
    (torch.Size([1, 8, 8, 8]), torch.Size([1, 8, 8, 8]), 0)
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import astuple
from typing import Any, Literal

import numpy as np
import torch
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import convert_data_type, convert_to_dst_type

from medseg.transforms.filter_cache import FilterCache
from medseg.transforms.intensity_curves import BEZIER_TYPES, bezier_remap
from medseg.transforms.tree_filter import Quantisation, Rounding, TreeFilterSettings, structure_aware_filter

Perturbation = Literal["dsaif", "noise", "plain"]
PERTURBATIONS: tuple[str, ...] = ("dsaif", "noise", "plain")
#: keys written by :class:`VolumeTreeFilterd` (whole-volume Max-/Min-tree views)
FILTERED_KEYS = {"max": "image_maxtree", "min": "image_mintree"}


def gamma_contrast(x: np.ndarray, gamma: float | None, lo: float, hi: float) -> np.ndarray:
    """``lo + (hi - lo) * ((x - lo) / (hi - lo)) ** gamma`` (values clipped to ``[lo, hi]`` first); float32."""
    x = np.asarray(x, dtype=np.float32)
    if gamma is None or not hi > lo:
        return x
    unit = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return (lo + (hi - lo) * unit**gamma).astype(np.float32)


def rotate_spatial(x: torch.Tensor, k: int, axes: tuple[int, int], leading: int) -> torch.Tensor:
    """``torch.rot90`` by ``k`` in spatial ``axes`` of a tensor with ``leading`` non-spatial dims first."""
    if k % 4 == 0:
        return x
    return torch.rot90(x, k, dims=(leading + axes[0], leading + axes[1]))


class IntensityRanged(MapTransform):
    """Store each channel's ``(min, max)`` of the whole volume as ``range_key`` (float32 ``(C, 2)``).

    Run before cropping: the views of a crop are scaled by its volume's range (3D code), and noise is
    sized relative to it.
    """

    def __init__(self, image_key: str = "image", range_key: str = "intensity_range") -> None:
        super().__init__([image_key])
        self.image_key, self.range_key = image_key, range_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        arr = convert_data_type(d[self.image_key], np.ndarray)[0]
        flat = arr.reshape(arr.shape[0], -1)
        d[self.range_key] = np.stack([flat.min(axis=1), flat.max(axis=1)], axis=1).astype(np.float32)
        return d


class VolumeTreeFilterd(MapTransform):
    """Deterministic: the Max-tree and Min-tree views of a whole volume into ``FILTERED_KEYS`` (volume scope).

    Each channel is quantised over its whole-volume range (``range_key``, as the patch scope does), so a
    crop of the result equals the patch-scope filter of the crop wherever no component crosses the crop
    border. With ``slice_axis`` (2D networks run slice by slice) each slice is filtered in 2D, like the crops.
    ``cache`` (a :class:`FilterCache`, optionally on disk) serves volumes or slices filtered before.
    """

    def __init__(
        self,
        image_key: str = "image",
        range_key: str = "intensity_range",
        slice_axis: int | None = None,
        min_area: int = 50,
        levels: int | None = 256,
        rounding: Rounding = "floor",
        connectivity: int | None = None,
        cache: FilterCache | None = None,
        quantisation: Quantisation = "code",
    ) -> None:
        super().__init__([image_key])
        self.image_key, self.range_key, self.slice_axis = image_key, range_key, slice_axis
        self.settings = TreeFilterSettings("max", min_area, levels, rounding, connectivity, quantisation)
        self.cache = cache

    def _filter(self, array: np.ndarray, tree: str, lo: float, hi: float) -> np.ndarray:
        s = self.settings

        def compute() -> np.ndarray:
            return structure_aware_filter(
                array, tree, min_area=s.min_area, levels=s.levels, rounding=s.rounding,  # type: ignore[arg-type]  # tree and rounding: Literal strings of the settings
                connectivity=s.connectivity, value_range=(lo, hi), quantisation=s.quantisation,
            )

        if self.cache is None:
            return compute()
        return self.cache.get_or_compute(array, ("dsaif_view", tree, astuple(s), lo, hi), compute)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image = d[self.image_key]
        arr = convert_data_type(image, np.ndarray, dtype=np.float32)[0]
        ranges = convert_data_type(d[self.range_key], np.ndarray)[0].reshape(-1, 2).astype(np.float64)
        for tree, key in FILTERED_KEYS.items():
            out = np.empty(arr.shape, dtype=np.float32)
            for c, (lo, hi) in enumerate(ranges):
                if self.slice_axis is None:
                    out[c] = self._filter(arr[c], tree, lo, hi)
                    continue
                moved_in, moved_out = np.moveaxis(arr[c], self.slice_axis, 0), np.moveaxis(out[c], self.slice_axis, 0)
                for z in range(moved_in.shape[0]):
                    moved_out[z] = self._filter(np.ascontiguousarray(moved_in[z]), tree, lo, hi)
            d[key] = convert_to_dst_type(out, image)[0]
        return d


class MutualViewsd(RandomizableTransform, MapTransform):
    """Write ``view_keys`` (inputs of network 1 and 2) and ``rotation_key`` (k of view 2) from ``image_key``.

    Args:
        perturbation: ``dsaif``, ``noise`` or ``plain`` (see the module docstring).
        prob: probability of perturbed views (else both views are the crop, ``k = 0``).
        swap_prob: ``dsaif``: probability that view 1 is the Min-tree one (else the Max-tree one).
        gamma_prob / gamma_range: per view, gamma contrast with this probability, gamma uniform in range.
        rotate_axes: spatial axes (of ``(C, *spatial)``) in which view 2 is rotated; None: no rotation.
        noise_std / noise_clip: ``noise``: std and clip of the Gaussian noise, fractions of the range.
        min_area, levels, rounding, connectivity, quantisation: ``dsaif`` filter settings (patch scope;
            ``quantisation`` ``"code"``: the maximum on level 254 as the code, ``"exact"``: on 255).
        scope: ``patch`` (filter the crop) or ``volume`` (read ``FILTERED_KEYS``, see :class:`VolumeTreeFilterd`).
        range_key: per-channel ``(min, max)`` of the volume (:class:`IntensityRanged`); absent: the crop's.
        bezier: each view starts from one of the code's three intensity remappings (type 0, 2 or 4, drawn
            per view; default True as the released configuration); False: from the crop itself.

    The crop is ``(C, *spatial)``; views are float32 tensors of the same shape. The whole-volume filtered
    crops are removed from the output. Every call makes the same number of random draws.
    """

    def __init__(
        self,
        perturbation: Perturbation,
        image_key: str = "image",
        view_keys: tuple[str, str] = ("view1", "view2"),
        rotation_key: str = "rot90",
        range_key: str = "intensity_range",
        prob: float = 0.5,
        swap_prob: float = 0.5,
        gamma_prob: float = 0.5,
        gamma_range: tuple[float, float] = (0.5, 1.5),
        rotate_axes: tuple[int, int] | None = None,
        noise_std: float = 0.1,
        noise_clip: float = 0.2,
        min_area: int = 50,
        levels: int | None = 256,
        rounding: Rounding = "floor",
        connectivity: int | None = None,
        scope: Literal["patch", "volume"] = "patch",
        quantisation: Quantisation = "code",
        bezier: bool = True,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        MapTransform.__init__(self, [image_key])
        if perturbation not in PERTURBATIONS:
            raise ValueError(f"perturbation must be one of {', '.join(PERTURBATIONS)}, got {perturbation!r}")
        if scope not in ("patch", "volume"):
            raise ValueError(f"scope must be 'patch' or 'volume', got {scope!r}")
        if not (len(gamma_range) == 2 and 0 < gamma_range[0] <= gamma_range[1]):
            raise ValueError(f"gamma_range must be (low, high) with 0 < low <= high, got {gamma_range}")
        if rotate_axes is not None and (len(set(rotate_axes)) != 2 or not set(rotate_axes) <= {0, 1, 2}):
            raise ValueError(f"rotate_axes must be two different spatial axes, got {rotate_axes}")
        self.perturbation, self.scope = perturbation, scope
        self.image_key, self.view_keys, self.rotation_key, self.range_key = image_key, tuple(view_keys), rotation_key, range_key
        self.swap_prob, self.gamma_prob, self.gamma_range = swap_prob, gamma_prob, tuple(gamma_range)
        self.rotate_axes = None if rotate_axes is None else (int(rotate_axes[0]), int(rotate_axes[1]))
        self.noise_std, self.noise_clip = noise_std, noise_clip
        self.settings = TreeFilterSettings("max", min_area, levels, rounding, connectivity, quantisation)
        self.bezier = bool(bezier)
        self.bezier_types = [0, 0]
        self.swap = False
        self.gammas: list[float | None] = [None, None]
        self.k = 0
        self.noise_seeds = [0, 0]

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self.swap = bool(self.R.rand() < self.swap_prob)
        low, high = self.gamma_range
        draws = [(self.R.rand(), self.R.uniform(low, high)) for _ in range(2)]
        self.gammas = [float(g) if u < self.gamma_prob else None for u, g in draws]
        k = int(self.R.randint(4))
        self.k = k if self.rotate_axes is not None else 0
        self.noise_seeds = [int(s) for s in self.R.randint(0, 2**31 - 1, size=2)]
        types = [BEZIER_TYPES[int(i)] for i in self.R.randint(len(BEZIER_TYPES), size=2)]  # drawn last: same stream
        self.bezier_types = types if self.bezier else [0, 0]

    def trees(self) -> tuple[str, str]:
        """Tree of view 1 and view 2 for the last draw."""
        return ("min", "max") if self.swap else ("max", "min")

    def _ranges(self, d: Mapping[Hashable, Any], crop: np.ndarray) -> np.ndarray:
        if self.range_key in d:
            return convert_data_type(d[self.range_key], np.ndarray)[0].reshape(-1, 2).astype(np.float64)
        flat = crop.reshape(crop.shape[0], -1)
        return np.stack([flat.min(axis=1), flat.max(axis=1)], axis=1).astype(np.float64)

    def _remapped(self, crop: np.ndarray, ranges: np.ndarray, index: int) -> np.ndarray:
        """View ``index``'s Bezier remapping of ``crop`` (per channel, within its volume range)."""
        kind = self.bezier_types[index]
        if kind == 0:
            return crop
        return np.stack([bezier_remap(crop[c], kind, lo, hi) for c, (lo, hi) in enumerate(ranges)])

    def _view(self, d: Mapping[Hashable, Any], crop: np.ndarray, ranges: np.ndarray, index: int) -> np.ndarray:
        gamma, tree = self.gammas[index], self.trees()[index]
        out = np.empty(crop.shape, dtype=np.float32)
        if self.perturbation == "dsaif" and self.scope == "volume":
            filtered = convert_data_type(d[FILTERED_KEYS[tree]], np.ndarray)[0]
        for c, (lo, hi) in enumerate(ranges):
            if self.perturbation == "dsaif" and self.scope == "patch":
                s = self.settings
                out[c] = structure_aware_filter(
                    crop[c], tree, min_area=s.min_area, levels=s.levels, rounding=s.rounding,  # type: ignore[arg-type]  # tree and rounding: Literal strings of the settings
                    connectivity=s.connectivity, value_range=(lo, hi), gamma=gamma, quantisation=s.quantisation,
                )
            elif self.perturbation == "dsaif":
                remapped = bezier_remap(filtered[c], self.bezier_types[index], lo, hi)
                out[c] = gamma_contrast(remapped, gamma, lo, hi)
            else:
                out[c] = gamma_contrast(crop[c], gamma, lo, hi)
                if self.perturbation == "noise" and self.noise_std > 0 and hi > lo:
                    rng = np.random.default_rng(self.noise_seeds[index] + c)
                    noise = rng.normal(0.0, self.noise_std * (hi - lo), crop[c].shape)
                    out[c] += np.clip(noise, -self.noise_clip * (hi - lo), self.noise_clip * (hi - lo)).astype(np.float32)
        return out

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize()
        crop = convert_data_type(d[self.image_key], np.ndarray, dtype=np.float32)[0]
        if crop.ndim not in (3, 4):
            raise ValueError(f"expected a channel-first 2D or 3D crop (C, *spatial), got shape {crop.shape}")
        ranges = self._ranges(d, crop)
        bases = [self._remapped(crop, ranges, i) for i in range(2)]  # the crop itself without Bezier views
        if self._do_transform:
            # volume scope reads the filtered crops (remapped after filtering); the others filter/noise the bases
            sources = [crop, crop] if self.perturbation == "dsaif" and self.scope == "volume" else bases
            v1, v2 = (torch.from_numpy(self._view(d, sources[i], ranges, i)) for i in range(2))
            k = self.k
        else:
            v1, v2 = (torch.from_numpy(b.copy()) for b in bases)
            k = 0
        if k and self.rotate_axes is not None:
            v2 = rotate_spatial(v2, k, self.rotate_axes, leading=1).contiguous()
        d[self.view_keys[0]], d[self.view_keys[1]] = v1, v2
        d[self.rotation_key] = torch.tensor(k, dtype=torch.long)
        for key in FILTERED_KEYS.values():
            d.pop(key, None)
        return d


def default_rotate_axes(patch_size: Sequence[int], slice_axis: int | None) -> tuple[int, int] | None:
    """The last two spatial axes with more than one voxel that are not the slice axis (None if fewer)."""
    axes = [a for a in range(len(patch_size)) if a != slice_axis and patch_size[a] > 1]
    return (axes[-2], axes[-1]) if len(axes) >= 2 else None


__all__ = [
    "FILTERED_KEYS",
    "PERTURBATIONS",
    "IntensityRanged",
    "MutualViewsd",
    "default_rotate_axes",
    "gamma_contrast",
    "rotate_spatial",
    "VolumeTreeFilterd",
]
