"""Label colours shared by every output that shows labels: PNG previews, the HTML case viewer and the
recommended display colours of DICOM SEG segments.

The colours are the Okabe-Ito palette (Okabe & Ito 2008, "Color Universal Design"), which stays
distinguishable for the common forms of colour blindness; its black is left out (invisible on a
grey-scale image). Label value ``v`` (``v > 0``) uses ``LABEL_COLOURS[(v - 1) % 7 + 1]``.
"""

from __future__ import annotations

#: index 0 (background) is transparent; 1..7: orange, sky blue, bluish green, yellow, blue, vermillion, reddish purple
LABEL_COLOURS = ("#00000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")


def label_colour(value: int) -> tuple[int, int, int]:
    """RGB (0-255) of label ``value`` (> 0)."""
    code = LABEL_COLOURS[(int(value) - 1) % 7 + 1]
    return int(code[1:3], 16), int(code[3:5], 16), int(code[5:7], 16)


def label_hex(value: int) -> str:
    """``#RRGGBB`` of label ``value`` (> 0)."""
    return "#{:02X}{:02X}{:02X}".format(*label_colour(value))


__all__ = ["LABEL_COLOURS", "label_colour", "label_hex"]
