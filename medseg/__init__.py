"""medseg: medical image segmentation and registration on PyTorch and MONAI.

The public Python API (:mod:`medseg.api`), imported on first use so that ``import medseg`` stays instant::

    import medseg
    model = medseg.load_model("runs/demo/model")
    result = model.predict("scan.nii.gz")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medseg._version import __version__

if TYPE_CHECKING:
    from medseg.api import Model, Result, evaluate, load_model, train

_API = ("Model", "Result", "evaluate", "load_model", "train")


def __getattr__(name: str) -> Any:
    if name in _API:
        import medseg.api

        return getattr(medseg.api, name)
    raise AttributeError(f"module 'medseg' has no attribute '{name}'")


__all__ = ["Model", "Result", "__version__", "evaluate", "load_model", "train"]
