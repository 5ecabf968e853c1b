"""Peak memory of a block of code: host RSS sampled by a thread (psutil), CUDA allocator peak.

glibc serves large blocks with mmap and returns them on free, so the process RSS follows the live
tensors closely and a 1 ms sampling thread catches the peak of anything that lives a few milliseconds.
glibc raises that mmap threshold dynamically after the first large free (later blocks then stay in the
heap and in the RSS after being freed, hiding the next peak): importing this module pins the threshold
(``mallopt(M_MMAP_THRESHOLD, 128 KiB)``, the glibc default), which turns the dynamic raise off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time
from types import TracebackType

import psutil
import torch


M_MMAP_THRESHOLD = -3


def pin_mmap_threshold(threshold: int = 128 * 1024) -> bool:
    """Fix glibc's mmap threshold (so freed large blocks leave the RSS); ``False`` where not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False


PINNED = pin_mmap_threshold()


class PeakMemory:
    """Context manager: ``host`` = peak RSS above the RSS at entry (bytes); ``device`` = CUDA peak above entry.

    Example:
        >>> with PeakMemory() as mem:
        ...     x = torch.ones(1 << 22)
        >>> mem.host >= 0
        True
    """

    def __init__(self, interval: float = 0.001, device: torch.device | None = None) -> None:
        self.interval = interval
        self.device = device if device is not None and device.type == "cuda" else None
        self.host = 0
        self.device_peak = 0
        self._stop = threading.Event()
        self._proc = psutil.Process()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self._proc.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        if self.device is not None:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._dev_base = torch.cuda.memory_allocated(self.device)
        self._base = self._peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._proc.memory_info().rss)
        self.host = self._peak - self._base
        if self.device is not None:
            torch.cuda.synchronize(self.device)
            self.device_peak = torch.cuda.max_memory_allocated(self.device) - self._dev_base

    @property
    def device_bytes(self) -> int:
        return self.device_peak
