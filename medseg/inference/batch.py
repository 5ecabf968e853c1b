"""One case or a batch of cases through the predictor, with every output ``medseg predict`` offers.

:func:`predict_case` reads a case (image files or a DICOM series), predicts it and writes what its
:class:`~medseg.inference.outputs.CaseTargets` ask for (label map, DICOM SEG, probabilities, entropy map,
statistics, preview, report), all or nothing. :func:`run_cases` runs a list of cases: in batch mode a
case whose outputs exist is skipped (``force`` redoes it), a failing case is logged and the batch goes
on, and ``summary.csv`` (case, status, volumes, timings, error) is rewritten after every case.
"""

from __future__ import annotations

import csv
import io
import re
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import MedsegError, MedsegInputError
from medseg.inference.cases import CaseSource, LoadedCase, load_case, single_case
from medseg.inference.outputs import CaseTargets, OutputSet, label_statistics
from medseg.inference.predictor import Prediction, Predictor
from medseg.inference.report import PeakMemory, case_report, input_digests
from medseg.inference.uncertainty import entropy_map, label_entropy
from medseg.inference.viewer import write_case_html
from medseg.io.atomic import full_suffix, write_text
from medseg.model.domain import domain_warnings
from medseg.progress import activity

OUTPUT_FORMATS = ("nifti", "dicom-seg", "both")
PHASES = ("read", "preprocess", "network", "restore", "write", "total")


@dataclass
class RunContext:
    """What every case of a run shares: the predictor, why its device was chosen, the model's description."""

    predictor: Predictor
    device_reason: str = ""
    model: dict[str, Any] = field(default_factory=dict)
    series_uid: str | None = None
    #: warnings are errors (unattended runs): a case with any warning fails and writes nothing
    strict: bool = False

    def settings(self) -> dict[str, Any]:
        p = self.predictor
        chunks = p.engine.chunks
        window: dict[str, Any] = {"window": "gaussian"} if chunks is None else {"window": "chunks", "chunk_stride": chunks.stride, "chunk_edge": chunks.edge}
        return {"overlap": p.overlap, "sw_batch_size": p.sw_batch_size, "tta": p.tta, "patch_size": list(p.roi_size), "backend": p.backend, **window}


@dataclass
class CaseRun:
    """Outcome of one case: ``status`` is ``ok``, ``skipped`` or ``failed`` (then ``error`` says why)."""

    case: str
    source: str
    status: str
    error: str = ""
    statistics: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float | None = None
    prediction: Prediction | None = None
    input_lines: list[str] = field(default_factory=list)  # for the console: the DICOM series used and ignored
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (file, message): see case_warnings


def _stem(path: Path) -> Path:
    name = path.name
    for suffix in (".seg.dcm", ".dcm"):
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)])
    suffix = full_suffix(path)
    return path.with_name(name[: -len(suffix)] if suffix else name)


def targets_for_file(
    output: Path, output_format: str, report: bool, uncertainty: bool,
    probabilities: Path | None = None, preview: Path | None = None, stats: Path | None = None,
) -> CaseTargets:
    """Outputs of a single case named by ``-o`` (a label file, or a ``.dcm`` DICOM SEG): extras beside it."""
    stem = _stem(output)
    is_seg = output.name.lower().endswith(".dcm")
    labels = None if output_format == "dicom-seg" else (stem.with_name(stem.name + ".nii.gz") if is_seg else output)
    suffix = full_suffix(labels) if labels is not None else ".nii.gz"
    return CaseTargets(
        labels,
        probabilities,
        preview or (stem.with_name(stem.name + ".preview.png") if report else None),
        stats,
        dicom_seg=None if output_format == "nifti" else (output if is_seg else stem.with_name(stem.name + ".seg.dcm")),
        report=stem.with_name(stem.name + ".report.json") if report else None,
        uncertainty=stem.with_name(stem.name + ".entropy" + suffix) if uncertainty else None,
    )


def targets_in_folder(
    folder: Path, case: str, output_format: str, report: bool, uncertainty: bool,
    probabilities: Path | None = None, preview: Path | None = None, stats: Path | None = None,
) -> CaseTargets:
    """Outputs of ``case`` in an output folder (``case.nii.gz``, ``case.seg.dcm``, ``case.report.json`` ...);
    ``probabilities``/``preview``/``stats`` are folders of their own (``case.nii.gz``/``case.png``/``case.json``)."""
    return targets_for_file(
        folder / f"{case}.{'seg.dcm' if output_format == 'dicom-seg' else 'nii.gz'}", output_format, report, uncertainty,
        probabilities / f"{case}.nii.gz" if probabilities else None,
        preview / f"{case}.png" if preview else None,
        stats / f"{case}.json" if stats else None,
    )


def requested_paths(targets: CaseTargets) -> list[Path]:
    """Every file the targets ask for."""
    fields = ("labels", "dicom_seg", "probabilities", "uncertainty", "stats", "preview", "report", "html")
    return [p for p in (getattr(targets, f) for f in fields) if p is not None] + list(targets.extras.values())


def case_warnings(loaded: LoadedCase, result: Prediction, context: RunContext, caught: Sequence[warnings.WarningMessage]) -> list[tuple[str, str]]:
    """Every warning of a case as ``(file, message)``: the console prints ``warning: file: message``, the
    report and ``summary.csv`` keep the messages (one path for all three)."""
    manifest = context.predictor.package.manifest
    first = str(loaded.source.paths[0])
    notes = [(first, note) for note in loaded.warnings]
    if loaded.series is not None and "with the most slices" in loaded.series.note:
        notes.append((first, f"folder holds several series; used {loaded.series.note}"))
    files = [Path(first)] if loaded.source.dicom else list(loaded.source.paths)
    image = loaded.image.detach().cpu().numpy()
    for path, note in domain_warnings(image, result.labels, loaded.geometry.spacing, manifest.training_data, manifest.preprocess.target_spacing, files):
        notes.append((str(path or first), note))
    if not np.any(result.labels):
        notes.append((first, "no foreground was predicted"))
    for w in caught:
        if not issubclass(w.category, (DeprecationWarning, FutureWarning, PendingDeprecationWarning)):
            notes.append((first, f"{w.category.__name__}: {' '.join(str(w.message).split())[:300]}"))
    return list(dict.fromkeys(notes))


def predict_case(context: RunContext, source: CaseSource, targets: CaseTargets, title: str = "", label: str = "") -> CaseRun:
    """Read, predict and write one case (all of its outputs or none); a spinner (or one plain line per
    phase in logs) names the phase, prefixed by ``label`` (default: the case name).

    Raises:
        MedsegError: the case cannot be read, predicted or written (nothing of it is left behind).
    """
    label = label or source.name
    with activity(f"{label}: reading") as phase:
        context.predictor.on_phase = lambda name: phase(f"{label}: {name}")
        try:
            return _predict_case(context, source, targets, title, lambda name: phase(f"{label}: {name}"))
        finally:
            context.predictor.on_phase = None


def _predict_case(context: RunContext, source: CaseSource, targets: CaseTargets, title: str, phase: Callable[[str], None]) -> CaseRun:
    predictor = context.predictor
    manifest = predictor.package.manifest
    memory = PeakMemory(predictor.device)
    memory.reset()
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_case(predictor, source, context.series_uid)
        if targets.dicom_seg is not None and loaded.series is None:
            raise MedsegInputError(source.paths[0], "DICOM SEG output needs a DICOM series as input (use --output-format nifti)")
        read = time.perf_counter() - start
        keep = targets.probabilities is not None or targets.uncertainty is not None or bool(targets.extras)
        phase("preprocessing and network")
        result = predictor.predict_image(loaded.image, loaded.geometry, keep_probabilities=keep)
    timings = {"read": read, **result.timings}
    notes = case_warnings(loaded, result, context, caught)
    if context.strict and notes:
        raise MedsegInputError(notes[0][0], "; ".join(dict.fromkeys(m for _, m in notes)) + " (--strict makes warnings errors)")
    phase("writing outputs")
    written = time.perf_counter()
    geometry = loaded.geometry
    statistics = label_statistics(result.labels, geometry, manifest.labels)
    entropy = uncertainty = None
    if targets.uncertainty is not None:
        assert result.probabilities is not None
        entropy = entropy_map(result.probabilities, categorical=predictor.head.categorical)
        uncertainty = {"map": str(targets.uncertainty), "measure": "normalised entropy of the (TTA-averaged) probabilities",
                       "tta": predictor.tta, **label_entropy(entropy, result.labels, manifest.labels)}
    with OutputSet().transaction() as out:
        if targets.labels is not None:
            out.image(targets.labels, result.labels, geometry, "label")
        if targets.probabilities is not None:
            out.image(targets.probabilities, result.probabilities, geometry, "vector")
        for name, path in targets.extras.items():  # head outputs, e.g. a nested model's WT/TC/ET masks
            array, kind = predictor.head.extra_output(name, result.probabilities, result.labels)  # type: ignore[arg-type]  # extras keep probabilities
            out.image(path, array, geometry, kind)
        if targets.uncertainty is not None:
            out.image(targets.uncertainty, entropy, geometry, "image")
        if targets.dicom_seg is not None:
            from medseg.io.dicom_seg import write_dicom_seg

            assert loaded.series is not None
            out.written.append(write_dicom_seg(
                targets.dicom_seg, result.labels, loaded.series, manifest.labels, manifest.name,
                str(context.model.get("weights_sha256", ""))[:12] or manifest.medseg_version, manifest.segments,
            ))
        if targets.stats is not None:
            out.json(targets.stats, statistics)
        if targets.preview is not None:
            modality = {"ct": "CT", "mri": "MR"}.get(manifest.preprocess.intensity)  # CT: soft-tissue window; MR: percentiles
            out.preview(targets.preview, loaded.image[0].numpy(), result.labels, geometry, title or source.name, names=manifest.labels, modality=modality)
        timings["write"] = time.perf_counter() - written
        timings["total"] = time.perf_counter() - start
        peak = memory.read()
        if targets.report is not None or targets.html is not None:
            outputs = {f: str(getattr(targets, f)) for f in ("labels", "dicom_seg", "probabilities", "uncertainty", "stats", "preview", "html")
                       if getattr(targets, f) is not None} | {name: str(path) for name, path in targets.extras.items()}
            report = case_report(
                case=source.name, inputs={"path": str(source.paths[0].absolute()), "paths": [str(p.absolute()) for p in source.paths], **input_digests(loaded.files)},
                geometry=geometry.to_dict(), model=context.model, device=str(predictor.device), device_reason=context.device_reason,
                settings=context.settings(), timings=timings, memory=peak, statistics=statistics, uncertainty=uncertainty,
                outputs=outputs, warnings=[m for _, m in notes],
                dicom=loaded.series.summary() if loaded.series is not None else None,
            )
            if targets.report is not None:
                out.json(targets.report, report)
            if targets.html is not None:  # the case viewer: image, labels, legend, warnings and provenance in one page
                out.written.append(write_case_html(
                    targets.html, loaded.image[0].numpy(), geometry, result.labels, names=manifest.labels, title=title or source.name,
                    warnings=report["warnings"], report=report, modality={"ct": "CT", "mri": "MR"}.get(manifest.preprocess.intensity)))
    return CaseRun(source.name, source.describe(), "ok", "", statistics, timings, peak["rss_mb"], result,
                   loaded.series.console_lines() if loaded.series is not None else [], notes)


def run_cases(
    context: RunContext,
    cases: Sequence[CaseSource],
    targets_for: Callable[[CaseSource], CaseTargets],
    batch: bool,
    force: bool = False,
    summary: Path | None = None,
    on_case: Callable[[CaseRun], None] | None = None,
) -> list[CaseRun]:
    """Predict ``cases`` in order. In batch mode a case whose outputs all exist is skipped (unless
    ``force``), and a failing case is recorded and skipped; outside batch mode errors propagate."""
    runs: list[CaseRun] = []
    for number, source in enumerate(cases, 1):
        targets = targets_for(source)
        existing = [p for p in requested_paths(targets) if p.exists()]
        if batch and existing and not force:
            missing = [p.name for p in requested_paths(targets) if not p.exists()]
            run = (CaseRun(source.name, source.describe(), "skipped", "outputs exist (--force to overwrite)") if not missing else
                   CaseRun(source.name, source.describe(), "failed", f"outputs of an earlier run exist ({existing[0].name}) but not {', '.join(missing)}; use --force"))
        else:
            try:
                run = predict_case(context, source, targets, label=f"case {number}/{len(cases)} {source.name}" if batch else "")
            except MedsegError as exc:
                if not batch:
                    raise
                run = CaseRun(source.name, source.describe(), "failed", " ".join(str(exc).split()))
            except Exception as exc:  # a batch goes on after anything a case raises; the summary keeps the message
                if not batch:
                    raise
                run = CaseRun(source.name, source.describe(), "failed", f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
        run.prediction = None  # keep memory flat over long batches
        runs.append(run)
        if summary is not None:
            write_summary(summary, runs, context.predictor.package.manifest.labels)
        if on_case is not None:
            on_case(run)
    return runs


def _column(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_").lower() or "label"


def write_summary(path: Path, runs: Sequence[CaseRun], label_names: dict[int, str]) -> Path:
    """``summary.csv``: case, status, input, volume (ml) per label, seconds per phase, peak memory, error,
    warnings (the case's warning messages, ``; ``-separated)."""
    labels = [(value, _column(name)) for value, name in sorted(label_names.items()) if value != 0]
    header = ["case", "status", "input", *[f"volume_ml_{name}" for _, name in labels], *[f"{p}_s" for p in PHASES], "peak_rss_mb", "error", "warnings"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for run in runs:
        volumes = [run.statistics["labels"][str(v)]["volume_ml"] if run.statistics else "" for v, _ in labels]
        times = [f"{run.timings[p]:.3f}" if p in run.timings else "" for p in PHASES]
        writer.writerow([run.case, run.status, run.source, *volumes, *times, "" if run.peak_rss_mb is None else run.peak_rss_mb, run.error,
                         "; ".join(dict.fromkeys(m for _, m in run.warnings))])
    return write_text(path, buffer.getvalue())


def predict_to_files(predictor: Predictor, files: Sequence[Path], targets: CaseTargets, title: str = "") -> Prediction:
    """Predict one case (image files or a DICOM folder) and write its requested outputs, all or nothing
    (the demo; ``medseg predict`` runs :func:`run_cases`, which calls the same code)."""
    run = predict_case(RunContext(predictor), single_case([Path(f) for f in files]), targets, title)
    assert run.prediction is not None
    return run.prediction


__all__ = ["CaseRun", "case_warnings", "OUTPUT_FORMATS", "RunContext", "predict_case", "predict_to_files", "requested_paths", "run_cases",
           "targets_for_file", "targets_in_folder", "write_summary"]
