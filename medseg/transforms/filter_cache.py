"""A cache for deterministic, expensive array filters (e.g. the DSAIF Max-/Min-tree views).

Keyed by the array's content (dtype, shape, bytes hashed with BLAKE2b) and the filter's parameters, so a
volume is filtered once per run however often a data loader visits it. Two levels:

* in memory: an LRU of at most ``max_items`` arrays (per process: each DataLoader worker has its own);
* on disk (optional ``cache_dir``): one ``<key>.npy`` per result, written atomically, so workers and later
  runs share it. Files are read with ``allow_pickle=False``.

Example:
    >>> cache = FilterCache(max_items=8)
    >>> x = np.arange(6.0).reshape(2, 3)
    >>> y = cache.get_or_compute(x, ("double",), lambda: 2 * x)
    >>> z = cache.get_or_compute(x, ("double",), lambda: 0 * x)  # hit: not recomputed
    >>> bool((y == z).all()), cache.hits, cache.misses
    (True, 1, 1)
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path

import numpy as np

from medseg.io.atomic import atomic_path


def array_key(array: np.ndarray, params: Hashable) -> str:
    """Hex digest of the array content (dtype, shape, C-order bytes) and ``repr(params)``."""
    array = np.ascontiguousarray(array)
    digest = hashlib.blake2b(digest_size=20)
    digest.update(f"{array.dtype.str}|{array.shape}|{params!r}|".encode())
    digest.update(array.tobytes() if not array.flags.c_contiguous else memoryview(array.data).cast("B"))
    return digest.hexdigest()


class FilterCache:
    """In-memory LRU (and optional on-disk ``.npy``) cache of filter results.

    Args:
        max_items: arrays kept in memory (0 disables the memory level).
        cache_dir: folder for ``<key>.npy`` files (created when first written); None: memory only.

    Results are returned as copies, so callers may modify them.
    """

    def __init__(self, max_items: int = 32, cache_dir: str | Path | None = None) -> None:
        if max_items < 0:
            raise ValueError(f"max_items must be >= 0, got {max_items}")
        self.max_items = int(max_items)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._memory)

    def clear(self) -> None:
        """Empty the memory level (files on disk stay)."""
        with self._lock:
            self._memory.clear()

    def _remember(self, key: str, value: np.ndarray) -> None:
        if self.max_items == 0:
            return
        with self._lock:
            self._memory[key] = value
            self._memory.move_to_end(key)
            while len(self._memory) > self.max_items:
                self._memory.popitem(last=False)

    def get_or_compute(self, array: np.ndarray, params: Hashable, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """Return the cached result for ``(array, params)``, computing and storing it on a miss."""
        key = array_key(array, params)
        with self._lock:
            value = self._memory.get(key)
            if value is not None:
                self._memory.move_to_end(key)
        if value is None and self.cache_dir is not None:
            path = self.cache_dir / f"{key}.npy"
            if path.is_file():
                value = np.load(path, allow_pickle=False)
                self._remember(key, value)
        if value is not None:
            self.hits += 1
            return value.copy()
        self.misses += 1
        value = np.asarray(compute())
        if self.cache_dir is not None:
            with atomic_path(self.cache_dir / f"{key}.npy") as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, value, allow_pickle=False)
        self._remember(key, value.copy())
        return value
