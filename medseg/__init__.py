"""medseg: medical image segmentation and registration on PyTorch and MONAI."""

from __future__ import annotations

__version__ = "0.1.0"
