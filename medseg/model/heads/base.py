"""Output heads: how a network's raw output becomes probabilities and a label map.

The predictor, the trainer's validation, the metrics and the CLI only talk to a head, so outputs that are not
a softmax over classes (the nested multi-level activation, displacement fields) slot in without special cases.
A head is named by ``output.kind`` in the model package; its options are a typed pydantic model
(a :class:`~medseg.config.OutputOptions` subclass, registered with the head) and ``medseg.json``'s ``output`` section is the
discriminated union of them by ``kind`` (:data:`medseg.config.OutputSection`).

Besides decoding, a head states what depends on it: whether its probabilities are categorical (a softmax:
one distribution over all channels) or independent per channel (:attr:`OutputHead.categorical`), the
training target (:meth:`OutputHead.training_target`), the validation score the trainer selects checkpoints by
(:meth:`OutputHead.validation_scorer`), optional extra outputs of ``medseg predict --extra NAME=PATH``
(:meth:`OutputHead.extra_outputs`), a one-line description for logs (:meth:`OutputHead.describe`) and the
network output kinds it can decode (:attr:`OutputHead.network_kinds`, checked by :func:`check_network`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from medseg.config import OUTPUT_KINDS, OutputOptions, parse_output
from medseg.errors import MedsegConfigError
from medseg.io.image_io import Kind, label_dtype_for
from medseg.metrics.dice import DiceAccumulator
from medseg.networks.registry import core_network
from medseg.registry import Registry

#: heads by ``output.kind``; metadata ``options``: the head's :class:`OutputOptions` model
HEADS: Registry[type[OutputHead]] = Registry("output kind", packages=["medseg.model.heads"], option="output.kind")


def register_head(kind: str, options: type[OutputOptions]) -> Callable[[type[OutputHead]], type[OutputHead]]:
    """Class decorator registering a head for ``output.kind == kind``, and its options model for the ``output``
    section (:data:`medseg.config.OUTPUT_KINDS`)."""

    def decorator(cls: type[OutputHead]) -> type[OutputHead]:
        cls.kind = kind
        HEADS.add(kind, cls, options=options)
        OUTPUT_KINDS.add(kind, options)
        return cls

    return decorator


class OutputHead:
    """Base head.

    Args:
        labels: ``{label value: name}`` of the model package, background included.
        **options: the head's options (fields of its :class:`OutputOptions` model other than ``kind``).
    """

    kind: ClassVar[str] = "base"
    #: network ``output_kind`` values this head decodes besides its own ``kind`` (see :func:`check_network`)
    network_kinds: ClassVar[tuple[str, ...]] = ()
    #: probabilities form one categorical distribution over the channels (softmax); ``False``: independent
    #: per-channel probabilities (sigmoid regions). Decides the entropy of ``--uncertainty``.
    categorical: ClassVar[bool] = True
    #: the head decodes label maps (``False`` for registration heads)
    segments: ClassVar[bool] = True

    def __init__(self, labels: dict[int, str], **options: Any) -> None:
        self.labels = {int(k): v for k, v in sorted(labels.items())}
        self.options = options

    @property
    def label_dtype(self) -> np.dtype:
        """Storage dtype of this head's label maps (:func:`medseg.io.image_io.label_dtype_for`)."""
        return label_dtype_for(max(self.labels, default=0))

    @property
    def torch_label_dtype(self) -> torch.dtype:
        """Label dtype while labels are made on a device: uint8 when they fit, else int32 (torch lacks uint16 ops)."""
        return torch.uint8 if self.label_dtype == np.uint8 else torch.int32

    def check_segmentation(self) -> None:
        """Raise a :class:`~medseg.errors.MedsegError` if this head gives no label maps (the predictor asks first)."""

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """``(B, C, *spatial)`` raw output -> ``(B, P, *spatial)`` probabilities (what gets resampled)."""
        raise NotImplementedError

    def to_labels(self, probabilities: torch.Tensor) -> torch.Tensor:
        """``(B, P, *spatial)`` probabilities -> ``(B, *spatial)`` label values (int64)."""
        raise NotImplementedError

    def probability_names(self) -> list[str]:
        """One name per probability channel (for ``--probabilities`` outputs and reports)."""
        raise NotImplementedError

    def logits_to_labels(self, logits: torch.Tensor) -> torch.Tensor:
        """``(B, C, *spatial)`` raw output -> ``(B, *spatial)`` labels on the network grid (override for a shortcut)."""
        return self.to_labels(self.probabilities(logits))

    def background_probabilities(self, channels: int) -> torch.Tensor:
        """``(P,)`` probabilities of a voxel known to be background (outside a cascade's ROI); default zeros."""
        return torch.zeros(channels)

    def training_target(self, label: torch.Tensor) -> torch.Tensor:
        """Label map as stored -> the target the loss expects (default: contiguous class indices)."""
        return self.value_to_index(label)

    def value_to_index(self, label: torch.Tensor) -> torch.Tensor:
        values = list(self.labels)
        if values == list(range(len(values))):
            return label
        lut = torch.zeros(max(values) + 1, dtype=torch.long, device=label.device)
        lut[torch.as_tensor(values, device=label.device)] = torch.arange(len(values), device=label.device)
        return lut[label.long().clamp(0, max(values))].to(label.dtype)

    def index_to_value(self, index: torch.Tensor) -> torch.Tensor:
        values = torch.as_tensor(list(self.labels), device=index.device)
        return values[index.long()]

    def validation_scorer(self) -> ValidationScorer:
        """What the trainer's validation scores (default: Dice per foreground label)."""
        return LabelDiceScorer(self.labels)

    def extra_outputs(self) -> dict[str, str]:
        """``{name: description}`` of the extra outputs this head can write (``--extra NAME=PATH``)."""
        return {}

    def extra_output(self, name: str, probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, Kind]:
        """Extra output ``name`` from one case's ``(*spatial, P)`` probabilities and ``(*spatial)`` labels.

        Returns:
            ``(array (*spatial[, C]), image kind for write_image: "label" | "vector")``.
        """
        raise MedsegConfigError(f"output kind '{self.kind}' has no extra output '{name}'; available: {', '.join(self.extra_outputs()) or 'none'}")

    def describe(self) -> str:
        """One line for logs: what the output is and how it is decoded (empty: nothing to say)."""
        return ""


class ValidationScorer:
    """Accumulates validation cases; ``result()`` holds ``val_score`` (higher is better) and named terms."""

    def update(self, prediction: torch.Tensor, reference: torch.Tensor) -> None:
        """Add one case: predicted and reference label values ``(*spatial)`` (same device)."""
        raise NotImplementedError

    def result(self) -> dict[str, float]:
        raise NotImplementedError


class LabelDiceScorer(ValidationScorer):
    """Per-case mean Dice per foreground label (``val_dice_<name>``); ``val_score`` is their mean."""

    def __init__(self, labels: dict[int, str]) -> None:
        self.names = labels
        self.acc = DiceAccumulator([v for v in labels if v != 0])

    def update(self, prediction: torch.Tensor, reference: torch.Tensor) -> None:
        self.acc.update(prediction, reference)

    def result(self) -> dict[str, float]:
        per_label = self.acc.per_case_mean()
        out = {f"val_dice_{self.names[k]}": v for k, v in per_label.items()}
        out["val_score"] = float(np.mean(list(per_label.values())))
        return out


def check_network(head: OutputHead, network: nn.Module) -> None:
    """Refuse a network whose output this head cannot decode.

    A network whose constructor picks its head declares it by an ``output_kind`` attribute (e.g.
    ``NestedResUNet``: ``nested``, ``labels`` or ``regions``). When that kind names a registered head, the
    configured head must be that one or list it in ``network_kinds``. Networks without the attribute emit
    generic logits and are not checked (any head whose channel count fits may decode them, e.g. ``regions``
    for region-based training of a plain UNet); neither are kinds without an head.

    Raises:
        MedsegConfigError: naming the kind to use.
    """
    kind = getattr(network, "output_kind", None)
    if kind is None:
        kind = getattr(core_network(network), "output_kind", None)
    if kind is None or kind not in HEADS or kind == head.kind or kind in head.network_kinds:
        return
    able = [k for k in HEADS.names() if k == kind or kind in HEADS.get(k).network_kinds]
    raise MedsegConfigError(f"output.kind '{head.kind}' cannot decode this network's '{kind}' head; use output.kind: {' or '.join(able)}")




def create_head(options: OutputOptions | dict[str, Any], labels: dict[int, str]) -> OutputHead:
    """The head of an ``output`` section (validated here when it is still a raw mapping)."""
    options = parse_output(options)
    return HEADS.get(options.kind)(labels, **options.model_dump(exclude={"kind"}))


__all__ = [
    "HEADS",
    "LabelDiceScorer",
    "OutputHead",
    "ValidationScorer",
    "check_network",
    "create_head",
    "register_head",
]
