"""DSAIF's schema: the ``semi_supervised`` section of a pipeline (``task: semi_supervised``).

Used by :mod:`medseg.engine.semisup` (mutual training) and :mod:`medseg.transforms.views` (the networks' views:
Max-/Min-tree filtering, noise, gamma, rotation). It sits in the configuration package, one floor below the
code that uses it, so that the pipeline schema can name it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from medseg.config.base import Strict
from medseg.config.sections import NetworkConfig


class RampUpConfig(Strict):
    """Ramp-up of the unsupervised weight over training iterations: ``w(t) = weight * f(r)`` with
    ``r = min(floor(t / step) * step / iterations, 1)``; ``f``: ``sigmoid`` ``exp(-5 (1 - r)^2)`` (Laine &
    Aila; DSAIF code: step 150, 40 steps = 6000 iterations), ``linear`` ``r``, ``cosine``
    ``(1 - cos(pi r)) / 2``, ``constant`` 1."""

    shape: Literal["sigmoid", "linear", "cosine", "constant"] = "sigmoid"
    iterations: int = Field(6000, ge=0)
    step: int = Field(150, ge=1)


class ViewsConfig(Strict):
    """How the two networks' inputs are drawn from one crop (DSAIF code defaults).

    With probability ``prob`` the crop gets perturbed views (else both networks see it as is): each view
    its own gamma contrast (``gamma_prob``, uniform in ``gamma_range``), then the perturbation; with
    ``rotate`` the second network's view is turned by k x 90 degrees (k uniform in 0..3) in ``rotate_axes``
    (default: the last two spatial axes that are not the slice axis) and its output turned back.
    ``labelled_too``: labelled crops get views as well (code), else only unlabelled ones.
    ``bezier`` (default true, the released configuration's ``bezier_type: [3, 3]``): each network's input
    starts from its own one of three intensity remappings of the crop (identity, or one of two increasing
    Bezier curves; drawn per network and per sample, perturbed or not; see
    ``medseg.transforms.intensity_curves``); false: from the crop itself.
    """

    prob: float = Field(0.5, ge=0, le=1)
    gamma_prob: float = Field(0.5, ge=0, le=1)
    gamma_range: tuple[float, float] = (0.5, 1.5)
    rotate: bool = True
    rotate_axes: tuple[int, int] | None = None
    labelled_too: bool = True
    bezier: bool = True

    @field_validator("gamma_range")
    @classmethod
    def _gamma(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= v[1]:
            raise ValueError("needs 0 < low <= high")
        return v


class DsaifViewsConfig(Strict):
    """Max-tree / Min-tree views (``perturbation: dsaif``); filter settings as ``medseg.transforms.tree_filter``.

    ``scope: patch`` (paper) filters each crop after cropping (gamma before quantisation, crop scaled by
    the whole volume's range); ``scope: volume`` filters each whole preprocessed volume once per tree
    (cached; ``cache_dir`` keeps the results on disk for later runs), crops the filtered volumes at the
    same place and applies the gamma afterwards (faster; areas are those of whole-volume components).
    ``swap_prob``: probability that network 1 gets the Min-tree view and network 2 the Max-tree view.
    ``quantisation``: ``code`` (default) scales to 8 bits by ``max - min + 1e-7`` and truncates as the code
    (the maximum on level 254); ``exact`` scales by ``max - min`` (the maximum on 255).
    """

    scope: Literal["patch", "volume"] = "patch"
    swap_prob: float = Field(0.5, ge=0, le=1)
    min_area: int = Field(50, ge=0)
    levels: int | None = Field(256, ge=2)
    rounding: Literal["floor", "nearest"] = "floor"
    connectivity: int | None = Field(None, ge=1, le=3)
    quantisation: Literal["code", "exact"] = "code"
    cache_dir: str | None = None


class NoiseViewsConfig(Strict):
    """Gaussian noise views (``perturbation: noise``): std and clip as fractions of the volume's range."""

    std: float = Field(0.1, ge=0)
    clip: float = Field(0.2, gt=0)


class SemiSupervisedConfig(Strict):
    """Semi-supervised mutual training (``task: semi_supervised``, :mod:`medseg.engine.semisup`).

    Two networks (``network`` and ``second_network``, default the same architecture) learn from labelled
    crops (the pipeline's ``loss``) and from each other's hard pseudo-labels on differently perturbed
    views of unlabelled crops (cross pseudo supervision, weighted by ``unsupervised_weight`` x ramp-up).

    ``labelled``: keep the labels of only this fraction (0 < x < 1) or count (>= 1) of the training cases
    (seeded choice; validation cases are labelled ones set aside first), or of the cases named in a list
    (e.g. a paper's partition); the others are used unlabelled and their labels never read. ``perturbation``: ``dsaif`` (Max-/Min-tree views), ``noise``, ``plain``
    (same view, except the rotation), or ``none`` (labelled-only training of both networks, no unlabelled
    data). ``export``: the model package holds the ``better`` network (best validation Dice of each) or
    the ``ensemble`` (their mean softmax, registered network ``ensemble``).
    """

    second_network: NetworkConfig | None = None
    labelled: int | float | list[str] | None = None
    perturbation: Literal["dsaif", "noise", "plain", "none"] = "dsaif"
    views: ViewsConfig = Field(default_factory=ViewsConfig)
    dsaif: DsaifViewsConfig = Field(default_factory=DsaifViewsConfig)
    noise: NoiseViewsConfig = Field(default_factory=NoiseViewsConfig)
    unsupervised_weight: float = Field(1.0, ge=0)
    rampup: RampUpConfig = Field(default_factory=RampUpConfig)
    poly_per_iteration: bool = True
    export: Literal["better", "ensemble"] = "better"

    @field_validator("labelled")
    @classmethod
    def _labelled(cls, v: int | float | list[str] | None) -> int | float | list[str] | None:
        if isinstance(v, list):
            if not v:
                raise ValueError("give at least one case name")
        elif v is not None and (v <= 0 or (isinstance(v, float) and v >= 1)):
            raise ValueError("give a fraction between 0 and 1, a count >= 1 or a list of case names")
        return v


__all__ = ["DsaifViewsConfig", "NoiseViewsConfig", "RampUpConfig", "SemiSupervisedConfig", "ViewsConfig"]
