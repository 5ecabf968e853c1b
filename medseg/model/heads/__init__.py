"""Output heads, one module per ``output.kind``: labels, liver_tumor, nested, nested_softmax, regions,
displacement (see :mod:`medseg.model.heads.base`).

:data:`HeadConfig` is the typed ``output`` section of a model package: the discriminated union (by ``kind``)
of the heads' option models. :func:`~medseg.model.heads.base.parse_head_options` validates a raw section with one-line errors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Union

from pydantic import Field

from medseg.model.heads import displacement, labels, liver_tumor, nested, nested_softmax, regions
from medseg.model.heads.base import (
    HEADS,
    HeadOptions,
    LabelDiceScorer,
    OutputHead,
    ValidationScorer,
    check_network,
    create_head,
    parse_head_options,
    register_head,
)

_OPTION_MODELS = tuple(m.__dict__[name] for m, name in (
    (labels, "LabelsOptions"),
    (liver_tumor, "LiverTumorOptions"),
    (nested, "NestedOptions"),
    (nested_softmax, "NestedSoftmaxOptions"),
    (regions, "RegionsOptions"),
    (displacement, "DisplacementOptions"),
))

if TYPE_CHECKING:
    HeadConfig = HeadOptions
else:
    #: the ``output`` section: one of the heads' option models, chosen by ``kind``
    HeadConfig = Annotated[Union[_OPTION_MODELS], Field(discriminator="kind")]  # noqa: UP007 (a runtime tuple)

__all__ = [
    "HEADS",
    "HeadConfig",
    "HeadOptions",
    "LabelDiceScorer",
    "OutputHead",
    "ValidationScorer",
    "check_network",
    "create_head",
    "parse_head_options",
    "register_head",
]
