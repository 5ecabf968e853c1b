"""Output heads, one module per ``output.kind``: labels, liver_tumor, nested, nested_softmax, regions,
displacement (see :mod:`medseg.model.heads.base`). Each module registers its head and its typed options; the
registries import them when first asked, so adding a head means adding one file here.

The ``output`` section of a pipeline and of ``medseg.json`` is validated by the options model of its ``kind``
(:data:`medseg.config.OutputSection`: a union of the registered models, discriminated by ``kind``).
"""

from __future__ import annotations

from medseg.model.heads.base import HEADS, LabelDiceScorer, OutputHead, ValidationScorer, check_network, create_head, register_head

__all__ = ["HEADS", "LabelDiceScorer", "OutputHead", "ValidationScorer", "check_network", "create_head", "register_head"]
