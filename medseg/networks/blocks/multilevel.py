"""Multi-level activation for hierarchically nested classes (Piraud, Sekuboyina, Menze, arXiv 1804.01910).

*Reconstruction.* Neither Piraud et al. nor Hu et al. (BrainLes 2018) could be read here, and no public code
exists, so every choice below is an argument with the default we picked, documented as such:

- One scalar channel ``z`` per voxel and K ordered offsets ``b_1 < ... < b_K`` (K = 3 for BraTS: WT, TC, ET).
- Region k's logit is ``s * (z - b_k)`` and its probability ``p_k = sigmoid(s * (z - b_k))``. Because
  ``b`` is increasing and ``s > 0`` the logits decrease with k at every voxel, so ``p_1 >= p_2 >= p_3`` and any
  single threshold gives nested masks (WT ⊇ TC ⊇ ET) *by construction* (also in floating point: rounding is
  monotone).
- The multi-level output is ``(1/K) * sum_k p_k``: a staircase in ``z`` with plateaus 0, 1/K, ..., 1.
- The predicted level is ``sum_k [p_k > 0.5]``, computed exactly as ``sum_k [logit_k > 0]``.
- Offsets fixed (default) or learnt: learnt offsets are ``b_1 = a_1`` and ``b_k = b_{k-1} + softplus(a_k)``
  (cumulative softplus increments keep them ordered), initialised to the given offsets.
- Defaults (our choice): offsets ``(0.5, 1.5, 2.5)`` (spacing 1, so ``z`` reads as a continuous level) and
  steepness ``s = 5`` so that a plateau centre (half a unit from the nearest offset) has probability
  sigmoid(2.5) ≈ 0.92. Only ``s`` times the offset spacing matters up to the scale of z, which the network learns.
- Offset initialisation ``offset_init`` (our choice, issue 19):

  * ``"centred"`` (default): on the first forward pass in training mode the offsets are shifted as a block
    (spacing kept) so that their midpoint sits at the median of z over that batch; the shift is stored
    (buffer ``calibrated``, and the offsets themselves), so checkpoints and resumed runs keep it. At
    initialisation the residual U-Net's z has a per-network mean anywhere in about -1..2 and a spread of
    about 1.5 (measured on phantom-sized inputs), so with the offsets as given the innermost level can start
    out of reach (z must climb above 2.5 with a steepness of 5: 1 % of voxels for one seed); centred, every
    level holds a share of the voxels from the first step.
  * ``"fixed"``: the offsets as given (the behaviour before issue 19: z ≈ 0 predicts background, ET needs
    z > 2.5).

  With several processes (DDP) the shift is the mean of the ranks' medians, so the offsets stay equal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

OFFSET_INITS = ("centred", "fixed")


def _inverse_softplus(x: float) -> float:
    """``y`` with ``softplus(y) == x`` for ``x > 0``."""
    return x + math.log(-math.expm1(-x))


class MultiLevelActivation(nn.Module):
    """Maps one multi-level channel ``z`` to K nested region logits ``s * (z - b_k)``.

    Args:
        offsets: ordered thresholds ``b_1 < ... < b_K``; K = ``len(offsets)`` is the number of nested levels
            (3 for BraTS: WT, TC, ET). Initial values when ``learn_offsets`` is True.
        steepness: ``s > 0``, the slope of every sigmoid.
        learn_offsets: learn the offsets as cumulative softplus increments (they stay ordered).
        offset_init: ``"centred"`` (default: shift the offsets onto the median of z of the first training
            batch, spacing kept) or ``"fixed"`` (use them as given, the behaviour before issue 19).

    Shapes:
        ``forward``: z ``(B, 1, *spatial)`` -> region logits ``(B, K, *spatial)``, channel k-1 = region k
        (WT, TC, ET for BraTS). The static helpers take region logits ``(B, K, *spatial)``.

    Example:
        >>> act = MultiLevelActivation(offsets=(0.5, 1.5, 2.5), steepness=5.0, offset_init="fixed")
        >>> logits = act(torch.tensor([0.0, 1.0, 2.0, 3.0]).view(1, 1, 4))
        >>> MultiLevelActivation.levels(logits).flatten().tolist()
        [0, 1, 2, 3]
    """

    fixed_offsets: torch.Tensor  # buffers (typed for mypy)
    calibrated: torch.Tensor

    def __init__(
        self,
        offsets: Sequence[float] = (0.5, 1.5, 2.5),
        steepness: float = 5.0,
        learn_offsets: bool = False,
        offset_init: str = "centred",
    ) -> None:
        super().__init__()
        if offset_init not in OFFSET_INITS:
            raise ValueError(f"offset_init must be one of {', '.join(OFFSET_INITS)}, got {offset_init!r}")
        values = [float(b) for b in offsets]
        if not values:
            raise ValueError("offsets needs at least one threshold")
        if not all(math.isfinite(b) for b in values):
            raise ValueError(f"offsets must be finite, got {values}")
        if any(b2 <= b1 for b1, b2 in zip(values, values[1:])):
            raise ValueError(f"offsets must be strictly increasing, got {values}")
        if not (math.isfinite(steepness) and steepness > 0):
            raise ValueError(f"steepness must be a positive number, got {steepness}")
        self.num_levels = len(values)
        self.steepness = float(steepness)
        self.learn_offsets = bool(learn_offsets)
        if learn_offsets:
            raw = [values[0]] + [_inverse_softplus(b2 - b1) for b1, b2 in zip(values, values[1:])]
            self.raw_offsets = nn.Parameter(torch.tensor(raw))
        else:
            self.register_buffer("fixed_offsets", torch.tensor(values))
        self.offset_init = offset_init
        # False until the centring shift is applied (always True for "fixed"); saved with the weights
        self.register_buffer("calibrated", torch.tensor(offset_init == "fixed"))

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object, **kwargs: object) -> None:
        # weights saved before offset_init existed were trained with the offsets they hold: keep them
        state_dict.setdefault(prefix + "calibrated", torch.tensor(True))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def centre_on(self, z: torch.Tensor) -> float:
        """Shift the offsets (spacing kept) so that their midpoint is the median of ``z``; returns the shift."""
        median = z.detach().flatten().median().to(torch.float32)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(median)
            median /= dist.get_world_size()
        offsets = self.offsets
        shift = median.to(offsets.device) - 0.5 * (offsets[0] + offsets[-1])
        if self.learn_offsets:
            self.raw_offsets[0] += shift.to(self.raw_offsets.dtype)
        else:
            self.fixed_offsets += shift.to(self.fixed_offsets.dtype)
        self.calibrated.fill_(True)
        return float(shift)

    @property
    def offsets(self) -> torch.Tensor:
        """The current ordered offsets ``(K,)``."""
        if not self.learn_offsets:
            return self.fixed_offsets
        steps = torch.cat([self.raw_offsets[:1], F.softplus(self.raw_offsets[1:])])
        return torch.cumsum(steps, dim=0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Region logits ``(B, K, *spatial)`` from the multi-level channel ``z`` ``(B, 1, *spatial)``."""
        if z.ndim < 2 or z.shape[1] != 1:
            raise ValueError(f"expected z of shape (B, 1, *spatial), got {tuple(z.shape)}")
        if self.training and not bool(self.calibrated):
            self.centre_on(z)
        offsets = self.offsets.to(dtype=z.dtype).view(1, -1, *([1] * (z.ndim - 2)))
        return self.steepness * (z - offsets)

    def extra_repr(self) -> str:
        return (
            f"num_levels={self.num_levels}, steepness={self.steepness}, learn_offsets={self.learn_offsets}, "
            f"offset_init={self.offset_init}"
        )

    @staticmethod
    def probabilities(region_logits: torch.Tensor) -> torch.Tensor:
        """Nested region probabilities ``p_k`` ``(B, K, *spatial)``, non-increasing in k."""
        return torch.sigmoid(region_logits)

    @staticmethod
    def multilevel_output(region_logits: torch.Tensor) -> torch.Tensor:
        """The staircase ``(1/K) * sum_k p_k`` in ``[0, 1]``, shape ``(B, 1, *spatial)``."""
        return torch.sigmoid(region_logits).mean(dim=1, keepdim=True)

    @staticmethod
    def levels(region_logits: torch.Tensor) -> torch.Tensor:
        """Predicted level ``sum_k [p_k > 0.5]`` as int64 ``(B, 1, *spatial)`` (0 = background)."""
        return (region_logits > 0).sum(dim=1, keepdim=True)
