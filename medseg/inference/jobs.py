"""Prediction jobs: what ``medseg predict`` (and the DICOM gateway) asks for, as cases and output paths.

A :class:`PredictRequest` is the typed form of the command line. :func:`prepare_job` checks it before any
model is loaded (inputs exist, output names fit the mode, nothing would be overwritten without ``force``,
folders writable) and turns it into a :class:`PredictJob`: the cases, batch or single mode, and
:meth:`PredictJob.targets`, the one place that decides which file each output of a case goes to.
:func:`open_context` loads the model package onto a device, and :func:`run_job` predicts the cases.

Output-path policy:

- batch (``inputs`` is one folder of cases, a list file, or a ``layout`` folder): ``output`` is a folder,
  ``case.nii.gz`` (or ``case.seg.dcm``) per case, ``case.report.json`` + ``case.preview.png`` unless
  ``report=False``; ``probabilities``/``preview``/``stats`` and every extra are folders (``case.nii.gz``,
  ``case.png``, ``case.json``); ``summary.csv`` (``summary.rankN.csv`` under torchrun) lists the cases;
- one case, ``output`` a file (``.nii.gz``, ``.nrrd``, ..., or ``.dcm`` for DICOM SEG): its side outputs
  sit beside it (``mask.report.json``, ``mask.preview.png``, ``mask.entropy.nii.gz``), the optional ones
  and the extras are the files given;
- one case, ``output`` a folder: like a batch of one (``folder/case.nii.gz``), optional outputs are files.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from medseg.device import local_device, rank, resolve_device, shard, world_size
from medseg.errors import MedsegInputError, MedsegOutputError
from medseg.inference.batch import OUTPUT_FORMATS, CaseRun, RunContext, requested_paths, run_cases, targets_for_file, targets_in_folder
from medseg.inference.cases import CaseSource, batch_cases, is_list_file, layout_cases, single_case
from medseg.inference.outputs import CaseTargets, preflight
from medseg.inference.predictor import Predictor
from medseg.io.atomic import ensure_writable_dir, full_suffix
from medseg.io.dicom import is_dicom_folder
from medseg.io.image_io import IMAGE_SUFFIXES
from medseg.io.modalities import case_files
from medseg.model.package import ModelPackage, describe, load_model_package, read_manifest
from medseg.progress import step

#: Where ``-m NAME`` looks for a package named NAME when NAME is not a path (the Docker image sets /models).
MODELS_ENV = "MEDSEG_MODELS"


def resolve_model(model: Path) -> Path:
    """``-m`` as given when it exists, else ``$MEDSEG_MODELS/NAME``."""
    root = os.environ.get(MODELS_ENV)
    if not model.exists() and root and len(model.parts) == 1 and (Path(root) / model).is_dir():
        return Path(root) / model
    return model


@dataclass(frozen=True)
class PredictRequest:
    """What to predict and where the outputs go (the options of ``medseg predict``).

    ``report=None`` means on in batch mode, off for one case; ``output_format=None`` means ``nifti``, or
    ``dicom-seg`` for a ``.dcm`` output; ``modalities`` names the modality of each input file
    (comma-separated, one case only); ``extras`` maps a head's extra output name to its path (a folder in
    batch mode); ``case_name`` makes the input one case of that name (its outputs in a folder are ``case_name.*``).
    """

    inputs: tuple[Path, ...]
    output: Path
    model: Path
    output_format: str | None = None
    series_uid: str | None = None
    report: bool | None = None
    uncertainty: bool = False
    probabilities: Path | None = None
    preview: Path | None = None
    stats: Path | None = None
    modalities: str | None = None
    layout: str | None = None
    extras: Mapping[str, Path] = field(default_factory=dict)
    force: bool = False
    case_name: str | None = None
    #: the case viewer page (``--html``): an .html file for one case, a folder of ``CASE.html`` in batch mode
    html: Path | None = None


@dataclass(frozen=True)
class PredictJob:
    """A checked request: its cases, the mode, the output format and whether reports are written."""

    request: PredictRequest
    cases: tuple[CaseSource, ...]
    batch: bool
    output_format: str
    report: bool
    to_folder: bool

    @property
    def summary(self) -> Path | None:
        """``summary.csv`` of a batch (``summary.rankN.csv`` per process under torchrun); ``None`` for one case."""
        if not self.batch:
            return None
        return self.request.output / ("summary.csv" if world_size() == 1 else f"summary.rank{rank()}.csv")

    def targets(self, case: CaseSource) -> CaseTargets:
        """Where each requested output of ``case`` goes (see the module docstring)."""
        r, fmt = self.request, self.output_format
        if self.batch:
            targets = targets_in_folder(r.output, case.name, fmt, self.report, r.uncertainty, r.probabilities, r.preview, r.stats)
        elif self.to_folder:
            name = r.output / f"{case.name}.{'seg.dcm' if fmt == 'dicom-seg' else 'nii.gz'}"
            targets = targets_for_file(name, fmt, self.report, r.uncertainty, r.probabilities, r.preview, r.stats)
        else:
            targets = targets_for_file(r.output, fmt, self.report, r.uncertainty, r.probabilities, r.preview, r.stats)
        if r.html is not None:
            targets = dataclasses.replace(targets, html=r.html / f"{case.name}.html" if self.batch else r.html)
        if not r.extras:
            return targets
        extras = dict(r.extras) if not (self.batch or self.to_folder) else {n: folder / f"{case.name}.nii.gz" for n, folder in r.extras.items()}
        return dataclasses.replace(targets, extras=extras)

    def shard(self) -> PredictJob:
        """This process's share of a batch under torchrun (every WORLD_SIZE-th case from RANK)."""
        return dataclasses.replace(self, cases=tuple(shard(self.cases))) if self.batch else self

    def for_model(self, package: ModelPackage) -> PredictJob:
        """The job checked against the loaded model: the files of one case put into the model's modality
        order (checked by name), and every requested extra output offered by the model's head."""
        available = package.head.extra_outputs()
        for name in self.request.extras:
            if name not in available:
                offered = ", ".join(f"{k} ({v})" for k, v in available.items()) or "none"
                raise MedsegInputError(None, f"--extra {name}: model '{package.manifest.name}' (output kind '{package.head.kind}') offers no such output; available: {offered}")
        if self.batch or self.cases[0].dicom:
            return self
        case = self.cases[0]
        ordered = tuple(case_files(case.paths, self.request.modalities, package.manifest.modalities))
        return dataclasses.replace(self, cases=(dataclasses.replace(case, paths=ordered),))


def _single_output_kind(output: Path, output_format: str | None) -> tuple[str, bool]:
    """``(format, output is a folder)`` for one case; a ``.dcm`` output means DICOM SEG."""
    suffix = full_suffix(output).lower()
    is_file = suffix in IMAGE_SUFFIXES or suffix == ".dcm"
    fmt = output_format or ("dicom-seg" if suffix == ".dcm" else "nifti")
    if is_file and output.is_dir():
        raise MedsegOutputError(f"{output}: is a folder, but its name looks like a file")
    if not is_file and output.exists() and not output.is_dir():
        raise MedsegOutputError(f"{output}: output needs an image extension ({', '.join(IMAGE_SUFFIXES)}), .dcm, or a folder")
    if is_file and fmt == "dicom-seg" and suffix != ".dcm":
        raise MedsegOutputError(f"{output}: --output-format dicom-seg writes a .dcm file (or give a folder)")
    if is_file and fmt == "nifti" and suffix == ".dcm":
        raise MedsegOutputError(f"{output}: a .dcm output is a DICOM SEG; use --output-format dicom-seg or both")
    return fmt, not is_file


def is_batch(request: PredictRequest) -> bool:
    """One input that is a folder of cases (not a DICOM series), a list file, or a ``layout`` folder
    (never with ``case_name``: a named case is one case)."""
    first = request.inputs[0]
    return request.case_name is None and len(request.inputs) == 1 and ((first.is_dir() and not is_dicom_folder(first)) or is_list_file(first) or request.layout is not None)


def prepare_job(request: PredictRequest) -> PredictJob:
    """Check ``request`` and create the output folders, before any model is loaded.

    Raises:
        MedsegInputError: missing inputs, options that do not fit the mode, DICOM SEG without DICOM input.
        MedsegOutputError: an output name that does not fit, an existing output without ``force``, or a
            folder that is not writable.
    """
    r = request
    if not r.inputs:
        raise MedsegInputError(None, "no input given (-i)")
    if r.output_format is not None and r.output_format not in OUTPUT_FORMATS:
        raise MedsegOutputError(f"--output-format {r.output_format}: expected one of {', '.join(OUTPUT_FORMATS)}")
    first = r.inputs[0]
    if r.layout is not None and len(r.inputs) != 1:
        raise MedsegInputError(first, "--layout needs one folder as input")
    if is_batch(r):
        if r.series_uid is not None:
            raise MedsegInputError(first, "--series-uid selects a series of one DICOM folder; it does not apply to a batch")
        if r.modalities is not None:
            raise MedsegInputError(first, "--modalities names the -i files of one case; in a batch, file names give the modality (case_fat, case_wat, ... or case_0000, case_0001, ...)")
        cases = batch_cases(first, read_manifest(resolve_model(r.model)).modalities) if r.layout is None else layout_cases(first, r.layout)
        job = PredictJob(r, tuple(cases), True, r.output_format or "nifti", True if r.report is None else r.report, True)
        for folder in (r.output, r.probabilities, r.preview, r.stats, r.html, *r.extras.values()):
            if folder is not None:
                ensure_writable_dir(folder)
        return job
    case = single_case(list(r.inputs))
    if r.case_name is not None:
        case = dataclasses.replace(case, name=r.case_name)
    if case.dicom and r.modalities is not None:
        raise MedsegInputError(first, "--modalities names image files; a DICOM series folder is one modality")
    fmt, to_folder = _single_output_kind(r.output, r.output_format)
    if fmt != "nifti" and not case.dicom:
        raise MedsegInputError(case.paths[0], "DICOM SEG output needs a DICOM series folder as input (use --output-format nifti)")
    if to_folder:
        for folder in (r.output, *r.extras.values()):
            ensure_writable_dir(folder)
    else:
        for path in r.extras.values():
            if full_suffix(path).lower() not in IMAGE_SUFFIXES:
                raise MedsegOutputError(f"{path}: --extra output needs an image extension ({', '.join(IMAGE_SUFFIXES)})")
    if r.html is not None and full_suffix(r.html).lower() not in (".html", ".htm"):
        raise MedsegOutputError(f"{r.html}: --html writes an .html file (a folder in batch mode)")
    job = PredictJob(r, (case,), False, fmt, bool(r.report), to_folder)
    preflight(list(requested_paths(job.targets(case))), r.force)
    if fmt != "nifti":
        from medseg.io.dicom_write import require_pydicom

        require_pydicom()
    return job


def open_context(
    model: Path, device: str = "auto", *, overlap: float | None = None, sw_batch_size: int | None = None,
    tta: bool | None = None, compile: bool = False, series_uid: str | None = None, strict: bool = False,
    backend: str = "torch",
) -> RunContext:
    """Resolve ``device`` (under torchrun: this process's GPU), load the model package and its predictor.

    Raises:
        MedsegError: the device does not exist here, or the package cannot be loaded (one line).
    """
    if overlap is not None and not 0 <= overlap < 1:  # the CLI checks its options; this guards the gateway and API callers
        raise MedsegInputError(None, f"overlap {overlap}: expected a value in [0, 1)")
    if sw_batch_size is not None and sw_batch_size < 1:
        raise MedsegInputError(None, f"sw_batch_size {sw_batch_size}: expected at least 1")
    dev, reason = resolve_device(device)
    dev = local_device(dev)
    folder = resolve_model(model)
    with step(f"loading model {folder}"):
        package = load_model_package(folder, dev)
        predictor = Predictor(package, dev, overlap, sw_batch_size, tta, compile=compile, backend=backend)
    return RunContext(predictor, reason, describe(package), series_uid, strict)


def memory_plans(job: PredictJob, predictor: Predictor) -> Iterator[str]:
    """The memory plan of each case from its headers (``medseg predict --plan``), one text block per case."""
    for source in job.cases:
        if source.dicom:  # no header-only geometry for a DICOM series
            yield f"{source.name}: --plan reads NIfTI/NRRD headers only; skipped (DICOM series)"
            continue
        yield f"{source.name}:\n{predictor.plan_files(list(source.paths), job.request.probabilities is not None).format()}"


def run_job(job: PredictJob, context: RunContext, on_case: Callable[[CaseRun], None] | None = None) -> list[CaseRun]:
    """Predict every case of ``job`` (a batch goes on past a failing case; one case raises)."""
    return run_cases(context, job.cases, job.targets, job.batch, job.request.force, job.summary, on_case)


__all__ = ["MODELS_ENV", "PredictJob", "PredictRequest", "is_batch", "memory_plans", "open_context", "prepare_job", "resolve_model", "run_job"]
