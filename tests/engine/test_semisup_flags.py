"""The DSAIF flags of issue 19 reach the views: Bezier remappings and the code's 8-bit quantisation."""

from __future__ import annotations

from medseg.config import bundled_pipeline, load_pipeline
from medseg.engine.semisup_data import _views


def test_code_defaults_reach_the_views() -> None:
    config = load_pipeline(bundled_pipeline("semisup_dsaif_phantom"))
    semi = config.semi_supervised
    assert semi is not None and semi.views.bezier and semi.dsaif.quantisation == "code"
    views = _views(config, "")
    assert views.bezier and views.settings.quantisation == "code"


def test_flags_switch_the_views() -> None:
    overrides = {"semi_supervised.views.bezier": False, "semi_supervised.dsaif.quantisation": "exact"}
    views = _views(load_pipeline(bundled_pipeline("semisup_dsaif_phantom"), overrides), "u_")
    assert not views.bezier and views.settings.quantisation == "exact"
    views.set_random_state(0)
    views.randomize()
    assert views.bezier_types == [0, 0]
