"""MONAI transforms for the DSAIF Max-tree / Min-tree structure-aware filters (see ``tree_filter``).

* :class:`StructureAwareFilter` / :class:`StructureAwareFilterd`: deterministic; each channel of a
  channel-first image ``(C, H, W)`` or ``(C, D, H, W)`` filtered on its own; optional :class:`FilterCache`
  so a volume is filtered once per run.
* :class:`RandStructureAwareFilter` / :class:`RandStructureAwareFilterd`: sample the paper's random
  parameters (applied with ``prob``; gamma in ``gamma_range`` with ``gamma_prob`` = 0.5; optional random
  sibling filter ``keep_prob``), then call the deterministic core.

Example:
    >>> import torch
    >>> img = torch.rand(1, 16, 16, 16)
    >>> views = [StructureAwareFilter(tree=t, min_area=20)(img) for t in ("max", "min")]
    >>> [tuple(v.shape) for v in views]
    [(1, 16, 16, 16), (1, 16, 16, 16)]
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import astuple
from typing import Any

import numpy as np
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Randomizable, RandomizableTransform, Transform
from monai.utils import TransformBackends, convert_data_type, convert_to_dst_type

from medseg.transforms.filter_cache import FilterCache
from medseg.transforms.tree_filter import Quantisation, Rounding, TreeFilterSettings, TreeType, structure_aware_filter


class StructureAwareFilter(Transform):
    """Max-tree or Min-tree DSAIF filter of every channel of a channel-first image.

    Args:
        tree: ``"max"`` or ``"min"``.
        min_area: area filter threshold in pixels/voxels (paper: 50).
        levels: quantisation levels after min-max scaling (paper: 256); None: exact values.
        rounding: ``"floor"`` (code) or ``"nearest"``.
        connectivity: 1 (faces) .. ndim (full: 8 in 2D, 26 in 3D, paper); None = full.
        value_range: scale to this ``(low, high)`` instead of each channel's min/max.
        cache: optional :class:`FilterCache`; used for the deterministic calls (no ``keep_prob``).
        cache_gamma: also cache calls with a gamma (off: a continuous gamma never repeats).
        quantisation: ``"code"`` (default: the maximum on level 254) or ``"exact"`` (on 255); see ``tree_filter``.

    Input ``(C, *spatial)`` numpy array or torch tensor (MetaTensor meta kept); output of the same type,
    float32 (or the input dtype for exact integer filtering with ``levels=None``).
    """

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(
        self,
        tree: TreeType = "max",
        min_area: int = 50,
        levels: int | None = 256,
        rounding: Rounding = "floor",
        connectivity: int | None = None,
        value_range: tuple[float, float] | None = None,
        cache: FilterCache | None = None,
        cache_gamma: bool = False,
        quantisation: Quantisation = "code",
    ) -> None:
        self.settings = TreeFilterSettings(tree, min_area, levels, rounding, connectivity, quantisation)
        if value_range is not None and not (len(value_range) == 2 and value_range[0] <= value_range[1]):
            raise ValueError(f"value_range must be (low, high) with low <= high, got {value_range}")
        self.value_range = None if value_range is None else (float(value_range[0]), float(value_range[1]))
        self.cache = cache
        self.cache_gamma = cache_gamma

    def filter_channel(
        self, channel: np.ndarray, gamma: float | None = None, keep_prob: float = 0.0, seed: int | None = None
    ) -> np.ndarray:
        """Filter one spatial array ``(H, W)`` or ``(D, H, W)`` (through the cache where allowed)."""
        s = self.settings

        def compute() -> np.ndarray:
            return structure_aware_filter(
                channel,
                s.tree,
                min_area=s.min_area,
                levels=s.levels,
                rounding=s.rounding,
                connectivity=s.connectivity,
                value_range=self.value_range,
                gamma=gamma,
                keep_prob=keep_prob,
                seed=seed,
                quantisation=s.quantisation,
            )

        cacheable = self.cache is not None and keep_prob == 0.0 and (gamma is None or self.cache_gamma)
        if not cacheable:
            return compute()
        params: Hashable = ("structure_aware_filter", astuple(s), self.value_range, gamma)
        return self.cache.get_or_compute(channel, params, compute)  # type: ignore[union-attr]  # cacheable implies a cache

    def __call__(
        self, img: NdarrayOrTensor, gamma: float | None = None, keep_prob: float = 0.0, seed: int | None = None
    ) -> NdarrayOrTensor:
        """Filter ``img`` ``(C, *spatial)``; ``gamma``, ``keep_prob``, ``seed`` as in ``structure_aware_filter``."""
        if img.ndim not in (3, 4):
            raise ValueError(f"expected a channel-first 2D or 3D image (C, *spatial), got shape {tuple(img.shape)}")
        arr = convert_data_type(img, np.ndarray)[0]
        out = np.stack([self.filter_channel(arr[c], gamma, keep_prob, seed) for c in range(arr.shape[0])])
        return convert_to_dst_type(out, img, dtype=out.dtype)[0]


class RandStructureAwareFilter(RandomizableTransform):
    """Random DSAIF filter: with ``prob``, filter with a gamma drawn with ``gamma_prob`` from ``gamma_range``.

    Paper/code: gamma with p = 0.5, uniform in (0.5, 1.5) (imgaug ``GammaContrast`` on the [0, 1] image);
    ``keep_prob`` is the code's ``tree_topoprob`` (0 in the released config). ``prob`` here is only whether
    to filter at all; the choice of Max-tree vs Min-tree per network belongs to the view generation.
    ``filter_kwargs`` go to :class:`StructureAwareFilter` (``min_area``, ``levels``, ``rounding``,
    ``connectivity``, ``value_range``, ``cache``, ``quantisation``; the cache serves the draws without gamma).
    """

    backend = StructureAwareFilter.backend

    def __init__(
        self,
        tree: TreeType = "max",
        prob: float = 1.0,
        gamma_prob: float = 0.5,
        gamma_range: tuple[float, float] = (0.5, 1.5),
        keep_prob: float = 0.0,
        **filter_kwargs: Any,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        if not 0.0 <= gamma_prob <= 1.0:
            raise ValueError(f"gamma_prob must be in [0, 1], got {gamma_prob}")
        if not (len(gamma_range) == 2 and 0 < gamma_range[0] <= gamma_range[1]):
            raise ValueError(f"gamma_range must be (low, high) with 0 < low <= high, got {gamma_range}")
        if not 0.0 <= keep_prob <= 1.0:
            raise ValueError(f"keep_prob must be in [0, 1], got {keep_prob}")
        self.gamma_prob, self.gamma_range, self.keep_prob = gamma_prob, tuple(gamma_range), keep_prob
        self.filter = StructureAwareFilter(tree, **filter_kwargs)
        self.gamma: float | None = None
        self.seed: int | None = None

    def randomize(self, data: Any = None) -> None:
        """Sample whether to filter, the gamma (or None) and the sibling-filter seed (if ``keep_prob``)."""
        super().randomize(None)
        self.gamma, self.seed = None, None
        if not self._do_transform:
            return
        if self.R.rand() < self.gamma_prob:
            low, high = self.gamma_range
            self.gamma = float(self.R.uniform(low, high))
        if self.keep_prob > 0.0:
            self.seed = int(self.R.randint(0, 2**31 - 1))

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        """Filter ``img`` ``(C, *spatial)`` with freshly sampled (or, with ``randomize=False``, the last) parameters."""
        if randomize:
            self.randomize()
        if not self._do_transform:
            return img
        return self.filter(img, gamma=self.gamma, keep_prob=self.keep_prob, seed=self.seed)


def _output_keys(keys: Sequence[Hashable], output_keys: KeysCollection | None) -> tuple[Hashable, ...]:
    if output_keys is None:
        return tuple(keys)
    out = tuple(output_keys) if isinstance(output_keys, (list, tuple)) else (output_keys,)
    if len(out) != len(keys):
        raise ValueError(f"output_keys must match keys in length, got {len(out)} for {len(keys)} keys")
    return out


class StructureAwareFilterd(MapTransform):
    """Dictionary version of :class:`StructureAwareFilter`.

    Args:
        keys: keys of the channel-first images to filter.
        tree: ``"max"`` or ``"min"``.
        output_keys: where to write the results (default: in place). E.g. ``keys="image",
            output_keys="image_max"`` keeps the original beside the Max-tree view.
        allow_missing_keys: skip absent keys.
        filter_kwargs: the other arguments of :class:`StructureAwareFilter`.
    """

    backend = StructureAwareFilter.backend

    def __init__(
        self,
        keys: KeysCollection,
        tree: TreeType = "max",
        output_keys: KeysCollection | None = None,
        allow_missing_keys: bool = False,
        **filter_kwargs: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_keys = _output_keys(self.keys, output_keys)
        self.filter = self._make_filter(tree, **filter_kwargs)

    def _make_filter(self, tree: TreeType, **kwargs: Any) -> Any:
        return StructureAwareFilter(tree, **kwargs)

    def _apply(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        return self.filter(img)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key, out_key in self.key_iterator(d, self.output_keys):
            d[out_key] = self._apply(d[key])
        return d


class RandStructureAwareFilterd(Randomizable, StructureAwareFilterd):
    """Dictionary version of :class:`RandStructureAwareFilter`: one draw per call, shared by all keys.

    Arguments as :class:`StructureAwareFilterd`; the keyword arguments go to
    :class:`RandStructureAwareFilter` (``prob``, ``gamma_prob``, ``gamma_range``, ``keep_prob``, and those of
    :class:`StructureAwareFilter`). The array transform is ``self.filter`` (its last draw: ``.gamma``).
    """

    def _make_filter(self, tree: TreeType, **kwargs: Any) -> RandStructureAwareFilter:
        return RandStructureAwareFilter(tree, **kwargs)

    def _apply(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        return self.filter(img, randomize=False)

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandStructureAwareFilterd:
        super().set_random_state(seed, state)
        self.filter.set_random_state(seed, state)
        return self

    def randomize(self, data: Any = None) -> None:
        self.filter.randomize()

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        self.randomize()
        return super().__call__(data)
