"""Output adapters: how a network's raw output becomes probabilities and a label map.

The predictor, metrics and CLI only talk to an adapter, so heads that are not a softmax over classes
(the nested multi-level activation, displacement fields) slot in without special cases. An adapter is
named by ``output.kind`` in the model package.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

_ADAPTERS: dict[str, type[OutputAdapter]] = {}


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

    def __init__(self, labels: dict[int, str], **options: Any) -> None:
        self.labels = {int(k): v for k, v in sorted(labels.items())}
        self.options = options

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """``(B, C, *spatial)`` raw output -> ``(B, P, *spatial)`` probabilities (what gets resampled)."""
        raise NotImplementedError

    def to_labels(self, probabilities: torch.Tensor) -> torch.Tensor:
        """``(B, P, *spatial)`` probabilities -> ``(B, *spatial)`` label values (int64)."""
        raise NotImplementedError

    def probability_names(self) -> list[str]:
        """One name per probability channel (for ``--probabilities`` outputs and reports)."""
        raise NotImplementedError

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


@register_adapter("labels")
class SoftmaxLabels(OutputAdapter):
    """Softmax over classes; argmax gives the label (class index -> label value of the package)."""

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits.float(), dim=1)

    def to_labels(self, probabilities: torch.Tensor) -> torch.Tensor:
        return self.index_to_value(torch.argmax(probabilities, dim=1))

    def probability_names(self) -> list[str]:
        return list(self.labels.values())

    def background_probabilities(self, channels: int) -> torch.Tensor:
        out = torch.zeros(channels)
        out[0] = 1.0  # label 0 (background) is always the first class
        return out


def create_adapter(output: dict[str, Any], labels: dict[int, str]) -> OutputAdapter:
    """Adapter for a package's ``output`` section (``{"kind": "labels", ...options}``)."""
    import medseg.inference.postprocess  # noqa: F401  (registers the liver_tumor adapter)

    options = dict(output)
    kind = options.pop("kind", "labels")
    if kind not in _ADAPTERS:
        raise KeyError(f"unknown output kind '{kind}'; known: {', '.join(sorted(_ADAPTERS))}")
    return _ADAPTERS[kind](labels, **options)
