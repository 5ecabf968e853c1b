"""The bundled semi-supervised pipelines validate, and their views and networks can be built."""

from __future__ import annotations

import pytest

from medseg.config import bundled_pipeline, load_pipeline
from medseg.model.package import build_network
from medseg.engine.semisup_data import rotate_axes


@pytest.mark.parametrize(("name", "axes"), [("semisup_dsaif", (0, 1)), ("semisup_dsaif_2d", None), ("semisup_dsaif_phantom", None)])
def test_semisup_pipelines(name: str, axes: tuple[int, int] | None) -> None:
    config = load_pipeline(bundled_pipeline(name))
    assert config.task == "semi_supervised" and config.semi_supervised is not None
    assert config.semi_supervised.perturbation == "dsaif" and config.semi_supervised.labelled == 0.1
    assert rotate_axes(config) == axes
    net = build_network(config.network)
    assert sum(p.numel() for p in net.parameters()) > 0
