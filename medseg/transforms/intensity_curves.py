"""Bezier intensity remappings of DSAIF's released configuration (``bezier_type: [3, 3]``).

DSAIF's code (GuGuLL123/DSAIF-SEMI ``dataset/semi.py``) does not read the training image itself when
``bezier_type`` is set (the released ``configs/Pancreas_CT.yaml``: ``[3, 3]``): for each sample it draws, for
each network independently, ``t`` uniform in {0, 1, 2} and loads a precomputed file ``*_type_{2 t}.npz``, i.e.
type 0, 2 or 4, with the same label. The script that wrote those files is not released. The naming and the
``image_similar`` / ``image_dissimilar`` keys match Dual-Normalization (Zhou et al., CVPR 2022,
``preprocess_func.py``), whose ``nonlinear_transformation`` returns six images of an image scaled to
``[-1, 1]``: the image, then five cubic Bezier remappings; the even ones (0, 2, 4) are its "source-similar"
set (increasing curves), the odd ones inverted. We therefore take types 0, 2, 4 to be:

* 0: the identity;
* 2: the cubic Bezier curve with control points (-1, -1), (-0.5, 0.5), (0.5, -0.5), (1, 1);
* 4: the same with (-0.75, 0.75), (0.75, -0.75);

each sampled at 100 000 parameter values, x and y each sorted (so the map is increasing: an S-shaped
contrast change) and applied by linear interpolation (``np.interp``). This is an inference from the file
names, not the authors' script.

Range (our choice): the curves act on the image min-max scaled to ``[-1, 1]`` over the given range (the whole
volume's) and the result is scaled back to that range, so every remapping keeps the image's range and type 0
is the image itself; in the code the network input has the range of the precomputed files, which is unknown.

Example:
    >>> x = np.linspace(0.0, 10.0, 5)
    >>> [np.round(bezier_remap(x, t, 0.0, 10.0).astype(float), 2).tolist() for t in BEZIER_TYPES]
    [[0.0, 2.5, 5.0, 7.5, 10.0], [0.0, 3.85, 5.0, 6.15, 10.0], [0.0, 4.38, 5.0, 5.62, 10.0]]
"""

from __future__ import annotations

import functools

import numpy as np

#: the code's three remappings (``*_type_{0,2,4}.npz``)
BEZIER_TYPES: tuple[int, ...] = (0, 2, 4)
#: inner control points of the cubic curves on [-1, 1] (end points (-1, -1) and (1, 1)); type 0: identity
_INNER_CONTROLS = {2: 0.5, 4: 0.75}
_SAMPLES = 100_000


@functools.cache
def bezier_curve(kind: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted samples ``(x, y)`` on ``[-1, 1]`` of remapping ``kind`` (2 or 4), for ``np.interp``."""
    if kind not in _INNER_CONTROLS:
        raise ValueError(f"no Bezier curve of type {kind}; the curves are types {sorted(_INNER_CONTROLS)}")
    c = _INNER_CONTROLS[kind]
    px, py = np.array([-1.0, -c, c, 1.0]), np.array([-1.0, c, -c, 1.0])
    t = np.linspace(0.0, 1.0, _SAMPLES)
    basis = np.stack([(1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t**2 * (1 - t), t**3])  # cubic Bernstein
    return np.sort(px @ basis), np.sort(py @ basis)


def bezier_remap(x: np.ndarray, kind: int, lo: float, hi: float) -> np.ndarray:
    """Remapping ``kind`` (0, 2 or 4) of ``x`` within ``[lo, hi]`` (values outside are clipped first); float32.

    ``lo + (hi - lo) * (B((x - lo) / (hi - lo) * 2 - 1) + 1) / 2`` with ``B`` the curve on ``[-1, 1]``; type 0
    and an empty range return ``x`` unchanged.
    """
    x = np.asarray(x, dtype=np.float32)
    if kind not in BEZIER_TYPES:
        raise ValueError(f"Bezier type must be one of {BEZIER_TYPES}, got {kind}")
    if kind == 0 or not hi > lo:
        return x
    xs, ys = bezier_curve(kind)
    unit = np.clip((x.astype(np.float64) - lo) / (hi - lo), 0.0, 1.0) * 2.0 - 1.0
    return (lo + (hi - lo) * (np.interp(unit, xs, ys) + 1.0) / 2.0).astype(np.float32)


__all__ = ["BEZIER_TYPES", "bezier_curve", "bezier_remap"]
