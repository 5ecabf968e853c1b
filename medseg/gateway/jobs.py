"""The one place where the gateway calls medseg's prediction: a DICOM series folder in, DICOM SEG out.

Everything else in :mod:`medseg.gateway` is independent of :mod:`medseg.inference` and
:mod:`medseg.engine`; this module does what ``medseg predict -i SERIES -o OUT --output-format both
--report`` does (same checks, warnings and report), through the same functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

#: File names of a job's outputs in its ``out_dir``.
CASE = "series"


@dataclass(frozen=True)
class JobResult:
    """Outputs of one series: the DICOM SEG, the label map (NIfTI), the JSON report, and its warnings."""

    seg_path: Path
    nifti_path: Path
    report_path: Path
    warnings: list[str] = field(default_factory=list)


def segment_series(series_folder: Path, model_dir: Path, out_dir: Path, device: str = "auto") -> JobResult:
    """Segment the DICOM series in ``series_folder`` with the model package ``model_dir`` into ``out_dir``.

    Writes ``series.seg.dcm``, ``series.nii.gz``, ``series.report.json`` and ``series.preview.png``,
    all or nothing (existing ones are replaced).

    Raises:
        MedsegError: the series cannot be read (gaps, mixed sizes, ...), the model cannot be loaded, or the
            outputs cannot be written; one line.
    """
    from medseg.engine.device import resolve_device
    from medseg.model.package import describe, load_model_package
    from medseg.inference.batch import RunContext, predict_case, targets_in_folder
    from medseg.inference.cases import CaseSource
    from medseg.inference.predictor import Predictor

    dev, reason = resolve_device(device)
    package = load_model_package(model_dir, dev)
    context = RunContext(Predictor(package, dev, None, None, None), reason, describe(package))
    targets = targets_in_folder(out_dir, CASE, "both", True, False)
    predict_case(context, CaseSource(CASE, (series_folder,), dicom=True), targets)
    assert targets.dicom_seg is not None and targets.labels is not None and targets.report is not None
    report = json.loads(targets.report.read_text(encoding="utf-8"))
    return JobResult(targets.dicom_seg, targets.labels, targets.report, list(report.get("warnings", [])))


__all__ = ["JobResult", "segment_series"]
