"""Routing: which model package segments a complete series (first matching rule of ``routes`` wins)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from medseg.gateway.config import Route
from medseg.gateway.queue import SeriesInfo


def matches(route: Route, series: SeriesInfo) -> bool:
    """True when ``series`` meets every criterion ``route`` sets (unset criteria match anything)."""
    if route.modality is not None and series.modality.upper() != route.modality.upper():
        return False
    if route.body_part is not None and series.body_part.upper() != route.body_part.upper():
        return False
    if route.series_description is not None and not re.search(route.series_description, series.description, re.IGNORECASE):
        return False
    if series.n_instances < route.min_slices:
        return False
    return route.max_slices is None or series.n_instances <= route.max_slices


def route_series(routes: Sequence[Route], series: SeriesInfo) -> Route | None:
    """The first rule ``series`` matches, or None."""
    return next((r for r in routes if matches(r, series)), None)


__all__ = ["matches", "route_series"]
