"""The one place where the gateway calls medseg's prediction: a DICOM series folder in, DICOM SEG out.

Everything else in :mod:`medseg.gateway` is independent of :mod:`medseg.inference` and
:mod:`medseg.engine`; this module does what ``medseg predict -i SERIES -o OUT --output-format both
--report`` does (same checks, output paths, warnings and report), through the same functions
(:mod:`medseg.inference.jobs`).
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
    from medseg.inference.jobs import PredictRequest, open_context, prepare_job, run_job

    request = PredictRequest((series_folder,), out_dir, model_dir, output_format="both", report=True, force=True, case_name=CASE)
    job = prepare_job(request)
    context = open_context(model_dir, device, backend="auto")  # as `medseg predict`: OpenVINO on the CPU when installed
    run_job(job.for_model(context.predictor.package), context)
    targets = job.targets(job.cases[0])
    assert targets.dicom_seg is not None and targets.labels is not None and targets.report is not None
    report = json.loads(targets.report.read_text(encoding="utf-8"))
    return JobResult(targets.dicom_seg, targets.labels, targets.report, list(report.get("warnings", [])))


__all__ = ["JobResult", "segment_series"]
