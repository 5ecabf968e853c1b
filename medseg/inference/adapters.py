"""Output adapters: how a network's raw output becomes probabilities and a label map.

The predictor, metrics and CLI only talk to an adapter, so heads that are not a softmax over classes
(the nested multi-level activation, displacement fields) slot in without special cases. An adapter is
named by ``output.kind`` in the model package.

Besides decoding, an adapter supplies what depends on the head: the training target
(:meth:`OutputAdapter.training_target`), the validation score the trainer selects checkpoints by
(:meth:`OutputAdapter.validation_scorer`), optional extra outputs of ``medseg predict --extra NAME=PATH``
(:meth:`OutputAdapter.extra_outputs`), a one-line description for logs (:meth:`OutputAdapter.describe`) and
the network output kinds it can decode (:attr:`OutputAdapter.network_kinds`, checked by
:func:`check_network`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from medseg.errors import MedsegConfigError
from medseg.metrics.dice import DiceAccumulator

_ADAPTERS: dict[str, type[OutputAdapter]] = {}
#: modules that register adapters when imported (kept lazy: only the kind in use is imported)
_ADAPTER_MODULES: dict[str, str] = {"displacement": "medseg.inference.registration"}


def register_adapter(kind: str) -> Callable[[type[OutputAdapter]], type[OutputAdapter]]:
    """Class decorator registering an adapter for ``output.kind == kind``."""

    def decorator(cls: type[OutputAdapter]) -> type[OutputAdapter]:
        _ADAPTERS[kind] = cls
        cls.kind = kind
        return cls

    return decorator


class OutputAdapter:
    """Base adapter.

    Args:
        labels: ``{label value: name}`` of the model package, background included.
        **options: adapter-specific options from the package's ``output`` section.
    """

    kind = "base"
    #: network ``output_kind`` values this adapter decodes besides its own ``kind`` (see :func:`check_network`)
    network_kinds: tuple[str, ...] = ()

    def __init__(self, labels: dict[int, str], **options: Any) -> None:
        self.labels = {int(k): v for k, v in sorted(labels.items())}
        self.options = options

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
        """``{name: description}`` of the extra outputs this adapter can write (``--extra NAME=PATH``)."""
        return {}

    def extra_output(self, name: str, probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, str]:
        """Extra output ``name`` from one case's ``(*spatial, P)`` probabilities and ``(*spatial)`` labels.

        Returns:
            ``(array (*spatial[, C]), image kind for write_image: "label" | "vector")``.
        """
        raise KeyError(f"output kind '{self.kind}' has no extra output '{name}'; available: {', '.join(self.extra_outputs()) or 'none'}")

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


@register_adapter("labels")
class SoftmaxLabels(OutputAdapter):
    """Softmax over classes; argmax gives the label (class index -> label value of the package)."""

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits.float(), dim=1)

    def to_labels(self, probabilities: torch.Tensor) -> torch.Tensor:
        return self.index_to_value(torch.argmax(probabilities, dim=1))

    def logits_to_labels(self, logits: torch.Tensor) -> torch.Tensor:
        index = torch.argmax(logits, dim=1)  # softmax is monotonic: no need to compute it
        return index if list(self.labels) == list(range(len(self.labels))) else self.index_to_value(index)

    def probability_names(self) -> list[str]:
        return list(self.labels.values())

    def background_probabilities(self, channels: int) -> torch.Tensor:
        out = torch.zeros(channels)
        out[0] = 1.0  # label 0 (background) is always the first class
        return out


def check_network(adapter: OutputAdapter, network: Any) -> None:
    """Refuse a network whose head this adapter cannot decode.

    A network whose constructor picks its head declares it by an ``output_kind`` attribute (e.g.
    ``NestedResUNet``: ``nested``, ``labels`` or ``regions``). When that kind names a registered adapter, the
    configured adapter must be that one or list it in ``network_kinds``. Networks without the attribute emit
    generic logits and are not checked (any adapter whose channel count fits may decode them, e.g. ``regions``
    for region-based training of a plain UNet); neither are kinds without an adapter.

    Raises:
        MedsegConfigError: naming the kind to use.
    """
    kind = getattr(network, "output_kind", None)
    if kind is None:
        from medseg.engine.package import core_network  # late: the package module imports this one

        inner = core_network(network)
        kind = getattr(inner, "output_kind", None)
    if kind is None or kind not in _ADAPTERS or kind == adapter.kind or kind in adapter.network_kinds:
        return
    able = sorted(k for k, cls in _ADAPTERS.items() if k == kind or kind in cls.network_kinds)
    raise MedsegConfigError(
        f"output.kind '{adapter.kind}' cannot decode this network's '{kind}' head; use output.kind: {' or '.join(able)}"
    )


def create_adapter(output: dict[str, Any], labels: dict[int, str]) -> OutputAdapter:
    """Adapter for a package's ``output`` section (``{"kind": "labels", ...options}``)."""
    import medseg.inference.postprocess  # noqa: F401  (registers the liver_tumor adapter)

    options = dict(output)
    kind = options.pop("kind", "labels")
    if kind not in _ADAPTERS and kind in _ADAPTER_MODULES:
        importlib.import_module(_ADAPTER_MODULES[kind])
    if kind not in _ADAPTERS:
        raise KeyError(f"unknown output kind '{kind}'; known: {', '.join(sorted(_ADAPTERS))}")
    return _ADAPTERS[kind](labels, **options)
