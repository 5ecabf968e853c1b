"""Evaluation of a run of cases (``medseg evaluate``, the demo, the claim experiments).

Policies (stated in the README's evaluation section too):

- **Labels of the run**: ``--labels``, or else the union of the non-zero values over every case's reference
  and prediction. Every case gets a row for every label of the run; a label absent from both maps of a case
  scores by the empty-mask policy (:mod:`medseg.metrics.scores`: Dice 1, HD95 0), so per-case means do not
  depend on whether ``--labels`` is given. A run with no label anywhere scores the foreground (any non-zero
  value, label ``foreground``) of each case rather than writing no row.
- **Missing cases** (the challenge convention): a reference case without a prediction is scored as an empty
  prediction (Dice 0 and HD95 = the image diagonal for each label its reference contains), its rows are marked
  ``missing = 1``, and it is listed on the console; with ``matched_only`` it is listed and not scored. A
  prediction without a reference is listed and ignored. Folders with no case name in common are an error.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import MedsegInputError
from medseg.io.geometry import Geometry
from medseg.io.image_io import case_name, is_image_file, read_image
from medseg.metrics.region_evaluate import FIELDS as REGION_FIELDS
from medseg.metrics.region_evaluate import REGION_SETS, evaluate_region_cases, summarize_regions
from medseg.metrics.regions import PooledCounts, evaluate_case, parse_regions
from medseg.metrics.scores import METRICS, both_empty_row, evaluate_arrays

__all__ = ["METRICS", "CaseMatch", "Evaluation", "evaluate_arrays", "evaluate_run", "match_cases", "read_pair", "summarize"]

#: label of the row scored when no case of a run contains any non-zero value
FOREGROUND = "foreground"


def read_pair(pred_path: str | Path, ref_path: str | Path) -> tuple[np.ndarray, np.ndarray, Geometry]:
    """Read a prediction and its reference; their geometries must agree (1e-4)."""
    pred, g_pred = read_image(pred_path, "label")
    ref, g_ref = read_image(ref_path, "label")
    problem = g_ref.mismatch(g_pred, atol=1e-4)
    if problem is not None:
        raise MedsegInputError(pred_path, f"geometry does not match the reference {Path(ref_path).name}: {problem}")
    return pred, ref, g_ref


@dataclass
class CaseMatch:
    """Predictions matched to references by case name.

    Attributes:
        pairs: ``(case, prediction or None, reference)``, sorted by case; ``None`` = no prediction (scored as
            empty unless ``matched_only``, then left out).
        missing: reference cases without a prediction.
        unmatched: prediction cases without a reference (ignored).
    """

    pairs: list[tuple[str, Path | None, Path]]
    missing: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)


def match_cases(pred: str | Path, ref: str | Path, matched_only: bool = False) -> CaseMatch:
    """Match two files, or two folders by case name (see the module docstring for the missing-case policy)."""
    pred, ref = Path(pred), Path(ref)
    for p in (pred, ref):
        if not p.exists():
            raise MedsegInputError(p, "file or folder not found")
    if pred.is_file() and ref.is_file():
        return CaseMatch([(case_name(ref), pred, ref)])
    if not (pred.is_dir() and ref.is_dir()):
        raise MedsegInputError(pred, "prediction and reference must both be files or both be folders")
    preds = {case_name(p): p for p in pred.iterdir() if is_image_file(p)}
    refs = {case_name(p): p for p in ref.iterdir() if is_image_file(p)}
    if not set(preds) & set(refs):
        raise MedsegInputError(pred, f"no case name in common with {ref}")
    missing = sorted(set(refs) - set(preds))
    scored = sorted(set(refs) & set(preds)) if matched_only else sorted(refs)
    return CaseMatch([(c, preds.get(c), refs[c]) for c in scored], missing, sorted(set(preds) - set(refs)))


@dataclass
class Evaluation:
    """The result of :func:`evaluate_run`.

    Attributes:
        rows: per case and label (or region): ``case``, ``label``, :data:`METRICS` (brats: + nesting
            violations), ``missing`` (1 = no prediction, scored as empty).
        summary: ``mean`` / ``std`` rows per label over the scored cases, and ``global`` rows (pooled Dice/IoU).
        fields: the CSV columns.
        notes: console lines (how files were read, label-set notes).
        warnings: console lines ``<folder>: ...`` for missing and unmatched cases.
    """

    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    fields: list[str]
    notes: list[str]
    warnings: list[str]

    def csv_text(self) -> str:
        """The CSV ``medseg evaluate -o`` writes: one row per case and label, then the summary rows."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.fields)
        writer.writeheader()
        writer.writerows(self.rows + self.summary)
        return buffer.getvalue()

    def mean_lines(self, tolerance_mm: float) -> list[str]:
        """One console line per label (or region): the means over cases, with the pooled global Dice."""
        global_dice = {row["label"]: row["dice"] for row in self.summary if row["case"] == "global"}
        lines = []
        for row in self.summary:
            if row["case"] == "mean":
                pooled = f" (global {global_dice[row['label']]:.4f})" if row["label"] in global_dice else ""
                lines.append(
                    f"label {row['label']}: Dice {row['dice']:.4f}{pooled}  IoU {row['iou']:.4f}  HD95 {row['hd95_mm']:.2f} mm  "
                    f"surface Dice {row['surface_dice_area']:.4f} (area-weighted, {tolerance_mm:g} mm)  volume diff {row['volume_diff_ml']:+.2f} ml"
                )
        return lines


def evaluate_run(
    pred: str | Path,
    ref: str | Path,
    labels: Sequence[int] | None = None,
    regions: str | None = None,
    tolerance_mm: float = 1.0,
    matched_only: bool = False,
) -> Evaluation:
    """Score a prediction file or folder against its reference(s) (``medseg evaluate``).

    Args:
        labels: labels to score (default: the union over all cases).
        regions: ``brats`` (WT, TC, ET), a preset (``lits``) or ``name=1+2,name2=2``; excludes ``labels``.
        matched_only: score only the cases that have a prediction.
    """
    if regions and labels:
        raise MedsegInputError(None, "--labels and --regions exclude each other")
    match = match_cases(pred, ref, matched_only)
    if regions in REGION_SETS:
        rows, notes = evaluate_region_cases(match.pairs, regions, tolerance_mm)
        summary, fields = summarize_regions(rows), list(REGION_FIELDS)
    else:
        rows, pooled, notes = _score_labels(match.pairs, labels, parse_regions(regions) if regions else None, tolerance_mm)
        summary, fields = summarize(rows) + pooled.rows(), ["case", "label", *METRICS]
    missing = set(match.missing)  # with matched_only, none of these was scored
    for row in rows:
        row["missing"] = int(row["case"] in missing)
    return Evaluation(rows, summary, [*fields, "missing"], notes, _warnings(match, Path(pred), matched_only))


def _score_labels(
    pairs: Sequence[tuple[str, Path | None, Path]], labels: Sequence[int] | None, region_map: dict | None, tolerance_mm: float
) -> tuple[list[dict[str, Any]], PooledCounts, list[str]]:
    """Rows per case and label (or union region); fills the labels of the run that a case lacks."""
    pooled = PooledCounts()
    per_case: dict[str, list[dict[str, Any]]] = {}
    for case, p, r in pairs:
        if p is None:
            ref_arr, geometry = read_image(r, "label")
            pred_arr = np.zeros_like(ref_arr)
        else:
            pred_arr, ref_arr, geometry = read_pair(p, r)
        per_case[case] = evaluate_case(pred_arr, ref_arr, geometry.spacing, labels, region_map, tolerance_mm, case, pooled)
    if labels is not None or region_map is not None:
        return [row for rows in per_case.values() for row in rows], pooled, []
    # each case was scored on its own labels; a label of the run absent from a case is absent from both of
    # its maps, so its row is the both-empty row (no second read of the files)
    run_labels: list[Any] = sorted({row["label"] for rows in per_case.values() for row in rows})
    notes = []
    if not run_labels:
        run_labels = [FOREGROUND]
        notes.append(f"no label in any reference or prediction: scored the empty foreground of each case as label '{FOREGROUND}'")
    out = []
    for case, rows in per_case.items():
        have = {row["label"]: row for row in rows}
        out += [have.get(label) or both_empty_row(case, label) for label in run_labels]
    pooled.counts = {label: pooled.counts.get(label, np.zeros(3, np.int64)) for label in run_labels}
    return out, pooled, notes


def _warnings(match: CaseMatch, pred: Path, matched_only: bool) -> list[str]:
    out = []
    if match.missing:
        how = "not scored (--matched-only)" if matched_only else "scored as empty predictions (Dice 0, HD95 = the image diagonal)"
        out.append(f"{pred}: no prediction for {len(match.missing)} reference case(s), {how}: {', '.join(match.missing)}")
    if match.unmatched:
        out.append(f"{pred}: {len(match.unmatched)} prediction(s) without a reference, ignored: {', '.join(match.unmatched)}")
    return out


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation per label over cases (rows with ``case`` = ``mean`` / ``std``)."""
    out = []
    for label in dict.fromkeys(r["label"] for r in rows):  # first-seen order: sorted labels, or region order
        subset = [r for r in rows if r["label"] == label]
        for stat, fn in (("mean", np.mean), ("std", np.std)):
            out.append({"case": stat, "label": label, **{m: float(fn([r[m] for r in subset])) for m in METRICS}})
    return out
