"""A registration job (``medseg register``): the request, its checks before any work, and its output files.

:func:`register_to_files` checks the inputs and outputs of a :class:`RegistrationRequest` (inputs are image
files, outputs have an image extension and do not exist unless ``force``), loads the package, registers
the pair with :class:`~medseg.inference.registration.Registrar` and writes every requested output, all
or nothing. Every image output is in the fixed image's geometry, except the inverse field (moving grid).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from medseg.device import resolve_device
from medseg.errors import MedsegInputError, MedsegOutputError
from medseg.inference.outputs import OutputSet, preflight
from medseg.inference.registration import Registrar, RegistrationResult
from medseg.io.atomic import full_suffix
from medseg.io.image_io import IMAGE_SUFFIXES
from medseg.model.package import load_model_package


@dataclass(frozen=True)
class RegistrationRequest:
    """Inputs and outputs of one registration (``None``: not given / not requested).

    ``output``: the moved image; ``warp``/``inverse_warp``: displacement fields; ``moving_label_map``
    warped into ``moved_label_map``; ``fixed_label_map`` scores Dice before/after; ``qa``: JSON of the QA numbers.
    """

    fixed: Path
    moving: Path
    model: Path
    output: Path
    warp: Path | None = None
    moving_label_map: Path | None = None
    moved_label_map: Path | None = None
    fixed_label_map: Path | None = None
    inverse_warp: Path | None = None
    qa: Path | None = None
    force: bool = False

    def outputs(self) -> list[Path]:
        """Every file the request writes, in the order they are written."""
        return [p for p in (self.output, self.warp, self.moved_label_map, self.inverse_warp, self.qa) if p is not None]


def check_request(request: RegistrationRequest) -> None:
    """Fail before any work on a folder given as an image, an output without an image extension, an existing
    output (without ``force``) or an unwritable folder."""
    r = request
    if r.moved_label_map is not None and r.moving_label_map is None:
        raise MedsegInputError(r.moved_label_map, "--moved-label-map needs --moving-label-map (the moving image's label map)")
    for path in (r.fixed, r.moving, r.moving_label_map, r.fixed_label_map):
        if path is not None and path.is_dir():
            raise MedsegInputError(path, "is a folder, expected an image file")
    for path in (r.output, r.warp, r.moved_label_map, r.inverse_warp):
        if path is not None and full_suffix(path).lower() not in IMAGE_SUFFIXES:
            raise MedsegOutputError(f"{path}: output needs an image extension ({', '.join(IMAGE_SUFFIXES)})")
    preflight(list(r.outputs()), r.force)


def register_to_files(
    request: RegistrationRequest, device: str = "auto", on_device: Callable[[str], None] | None = None
) -> RegistrationResult:
    """Check, register and write every requested output (all or nothing); ``on_device`` gets the device reason.

    Raises:
        MedsegError: bad inputs, outputs in the way, a package that is not a registration model (one line).
    """
    r = request
    check_request(r)
    dev, reason = resolve_device(device)
    if on_device is not None:
        on_device(reason)
    registrar = Registrar(load_model_package(r.model, dev), dev)
    result = registrar.register_files(r.fixed, r.moving, r.moving_label_map, r.fixed_label_map, inverse=r.inverse_warp is not None)
    with OutputSet().transaction() as out:
        out.image(r.output, result.moved, result.fixed_geometry, "image")
        if r.warp is not None:
            out.image(r.warp, result.displacement, result.fixed_geometry, "displacement")
        if r.moved_label_map is not None:
            out.image(r.moved_label_map, result.moved_labels, result.fixed_geometry, "label")
        if r.inverse_warp is not None:
            out.image(r.inverse_warp, result.inverse_displacement, result.moving_geometry, "displacement")
        if r.qa is not None:
            out.json(r.qa, {"fixed": str(r.fixed), "moving": str(r.moving), "model": str(r.model), **result.qa, "timings_s": result.timings})
    return result


__all__ = ["RegistrationRequest", "check_request", "register_to_files"]
