"""Dataset layouts (read in place) and synthetic phantoms; importing registers the built-in ones."""

from __future__ import annotations

from medseg.data import atrium_phantom, synthetic  # noqa: F401  (register "atrium_phantom", "ct_phantom")
from medseg.data import pairs  # noqa: F401  (registration pair layouts and the "mni152_pairs" generator)
from medseg.data import brats, glioma_phantom  # noqa: F401  (register the "brats" layout and "glioma_phantom")
from medseg.data import ivdm3seg, spine_phantom  # noqa: F401  (register "ivdm3seg", "spine_dixon")
from medseg.data import lits  # noqa: F401  (registers the "lits" and "msd_liver" layouts)
from medseg.data import liver_phantom  # noqa: F401  (registers "liver_phantom")
from medseg.data.layouts import discover_cases, load_decathlon, load_image_label_folders
from medseg.data.registry import generate_phantom, list_layouts, list_phantoms, register_layout, register_phantom

__all__ = [
    "discover_cases",
    "generate_phantom",
    "list_layouts",
    "list_phantoms",
    "load_decathlon",
    "load_image_label_folders",
    "register_layout",
    "register_phantom",
]
