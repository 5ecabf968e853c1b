"""Dataset layouts (read in place) and synthetic phantoms.

Each module registers its layouts and generators itself; the registries import the modules of this package
when first asked (:data:`~medseg.data.registry.LAYOUTS`, :data:`~medseg.data.registry.PHANTOMS`,
:data:`~medseg.data.pairs.PAIR_LAYOUTS`, :data:`~medseg.data.pairs.PAIR_GENERATORS`).
"""

from __future__ import annotations

from medseg.data.layouts import discover_cases, load_decathlon, load_image_label_folders
from medseg.data.registry import LAYOUTS, PHANTOMS, generate_phantom, list_layouts, list_phantoms, register_layout, register_phantom

__all__ = [
    "LAYOUTS",
    "PHANTOMS",
    "discover_cases",
    "generate_phantom",
    "list_layouts",
    "list_phantoms",
    "load_decathlon",
    "load_image_label_folders",
    "register_layout",
    "register_phantom",
]
