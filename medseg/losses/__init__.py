"""Losses by name (``loss.name`` in pipeline YAML): MONAI's, plus those MONAI lacks (one module each).

Each module registers its losses itself; :data:`~medseg.losses.registry.LOSSES` imports them when first asked.
"""

from __future__ import annotations

from medseg.losses.registry import LOSSES, create_loss, list_losses, register_loss

__all__ = ["LOSSES", "create_loss", "list_losses", "register_loss"]
