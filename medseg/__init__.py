"""medseg: medical image segmentation and registration on PyTorch and MONAI."""

from __future__ import annotations

from medseg._version import __version__
