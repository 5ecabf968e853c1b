"""Losses by name (``loss.name`` in pipeline YAML): MONAI's, plus those MONAI lacks (one module each)."""

from __future__ import annotations

from medseg.losses import nested  # noqa: F401  (registers "nested" and "nested_softmax")
from medseg.losses.registry import create_loss, list_losses, register_loss
from medseg.losses import registration as _registration  # noqa: F401  (micdir, voxelmorph, registration)
from medseg.losses import weighted_ce  # noqa: F401  (registers weighted_ce, hdenseunet)

__all__ = ["create_loss", "list_losses", "register_loss"]
