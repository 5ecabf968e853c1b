"""Label colours shared by every output that shows labels (PNG previews, DICOM SEG segment colours)."""

from __future__ import annotations

#: Overlay colours (label value v uses ``LABEL_COLOURS[(v - 1) % 7 + 1]``); DICOM SEG outputs default to them too.
LABEL_COLOURS = ("#00000000", "#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0")


def label_colour(value: int) -> tuple[int, int, int]:
    """RGB (0-255) of label ``value`` in previews."""
    code = LABEL_COLOURS[(int(value) - 1) % 7 + 1]
    return int(code[1:3], 16), int(code[3:5], 16), int(code[5:7], 16)


__all__ = ["LABEL_COLOURS", "label_colour"]
