"""Shared parts of the claim experiments: runs in parallel processes, paired scores, crossed bootstrap
intervals and the verdict of the pre-registered decision rule.

Every claim experiment (``pipelines/experiments/<method>_design.md`` says what it is, before it runs)
produces one score per (arm, seed, test case). The baseline arm and the method arm are paired by seed and
test case; the claim is decided on the paired difference ``method - baseline``:

- **supported**: the 95% bootstrap interval of the mean paired difference lies above 0;
- **not supported**: the interval lies below the design's margin (the data rule out a gain as large as the
  margin; with margin 0, the method is worse);
- **undecided**: otherwise;
- **no finding**: the competence gate failed (the baseline did not learn the task): nothing is compared.

The interval resamples seeds and test cases independently (a crossed bootstrap): the same test cases are
scored under every seed, so treating the seed x case cells as independent would understate the spread.

``python pipelines/experiments/claims.py table`` prints the results table of ``pipelines/README.md`` from
the committed ``pipelines/experiments/*_results.json``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

EXPERIMENTS = Path(__file__).resolve().parent
VERDICTS = ("supported", "not supported", "undecided", "no finding")


@dataclass(frozen=True)
class Design:
    """What a results file must say about its pre-registered design (``<method>_design.md``)."""

    method: str  # e.g. "H-DenseUNet"
    claim: str  # one sentence
    paper: str  # the paper's figure, as quoted in the design
    metric: str  # the primary metric, e.g. "tumour Dice per test case"
    baseline: str  # arm names
    treatment: str
    gate: str  # the competence gate in words, e.g. "2D DenseUNet tumour Dice >= 0.5"
    margin: float = 0.0  # "not supported" when the interval lies below this
    design_file: str = ""  # pipelines/experiments/<method>_design.md
    command: str = ""  # the command that reproduces the results


def run_parallel(function: Callable[..., Any], tasks: Sequence[tuple[Any, ...]], processes: int) -> list[Any]:
    """``[function(*task) for task in tasks]`` in ``processes`` spawned processes of one thread each.

    ``function`` must be importable by name in a fresh process: a function of the experiment script run as
    ``__main__`` (spawn re-runs the script as ``__mp_main__``), or of an installed module. Nothing of this
    module is sent to the workers (scripts load it under names of their own); the one-thread setting travels as
    ``OMP_NUM_THREADS=1``, which torch reads when a worker imports it. A worker that dies outright (killed for
    memory, a crash in native code) raises ``BrokenProcessPool`` here instead of leaving the run waiting forever
    (``multiprocessing.Pool`` replaces a dead worker and never returns its task).
    """
    import torch

    if processes <= 1 or len(tasks) <= 1:
        torch.set_num_threads(1)
        return [function(*task) for task in tasks]
    previous = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
            return list(pool.map(function, *zip(*tasks)))
    finally:
        if previous is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = previous


def score_matrix(rows: Iterable[dict[str, Any]], arm: str, key: str = "score") -> tuple[np.ndarray, list[int], list[str]]:
    """Scores of one arm as a (seeds, cases) array, with the seed and case orders (sorted)."""
    mine = [r for r in rows if r["arm"] == arm]
    seeds = sorted({int(r["seed"]) for r in mine})
    cases = sorted({str(r["case"]) for r in mine})
    matrix = np.full((len(seeds), len(cases)), np.nan)
    for r in mine:
        matrix[seeds.index(int(r["seed"])), cases.index(str(r["case"]))] = float(r[key])
    if np.isnan(matrix).any():
        raise ValueError(f"arm {arm!r}: not every seed scored every case")
    return matrix, seeds, cases


def crossed_bootstrap(diff: np.ndarray, n_boot: int = 10000, seed: int = 0) -> tuple[float, float]:
    """95% interval of the mean of a (seeds, cases) array, resampling seeds and cases independently."""
    rng = np.random.default_rng(seed)
    n_seeds, n_cases = diff.shape
    rows = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    cols = rng.integers(0, n_cases, size=(n_boot, n_cases))
    # mean over the resampled rows x resampled columns = mean over rows of (row's mean over the resampled columns)
    means = np.empty(n_boot)
    for b in range(n_boot):
        means[b] = diff[rows[b]][:, cols[b]].mean()
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def verdict(low: float, high: float, margin: float, gate_passed: bool) -> str:
    """The pre-registered decision rule (see the module docstring)."""
    if not gate_passed:
        return "no finding"
    if low > 0:
        return "supported"
    if high < margin:
        return "not supported"
    return "undecided"


def summarise(rows: list[dict[str, Any]], design: Design, gate_value: float, gate_passed: bool) -> dict[str, Any]:
    """Per-arm mean ± sd over seeds (of each seed's mean over cases), the paired difference and the verdict."""
    base, seeds, cases = score_matrix(rows, design.baseline)
    treat, seeds_t, cases_t = score_matrix(rows, design.treatment)
    if (seeds, cases) != (seeds_t, cases_t):
        raise ValueError("the two arms were not scored on the same seeds and cases")
    diff = treat - base
    low, high = crossed_bootstrap(diff)
    arms = {}
    for name, matrix in ((design.baseline, base), (design.treatment, treat)):
        per_seed = matrix.mean(axis=1)
        arms[name] = {"mean": float(per_seed.mean()), "sd": float(per_seed.std(ddof=1)) if len(per_seed) > 1 else 0.0,
                      "per_seed": [round(float(v), 4) for v in per_seed]}
    return {
        "seeds": seeds,
        "cases": cases,
        "arms": arms,
        "difference": {"mean": float(diff.mean()), "ci95": [low, high],
                       "per_seed": [round(float(v), 4) for v in diff.mean(axis=1)]},
        "gate": {"value": gate_value, "passed": bool(gate_passed)},
        "verdict": verdict(low, high, design.margin, gate_passed),
    }


def markdown(summary: dict[str, Any], design: Design) -> str:
    """A short report of one experiment."""
    d = summary["difference"]
    lines = [f"### {design.method}: {design.claim}", "",
             f"Primary metric: {design.metric}. Seeds {summary['seeds']}, {len(summary['cases'])} test cases.", "",
             "| arm | mean ± sd over seeds | per seed |", "|---|---|---|"]
    for name, arm in summary["arms"].items():
        lines.append(f"| {name} | {arm['mean']:.3f} ± {arm['sd']:.3f} | {', '.join(f'{v:.3f}' for v in arm['per_seed'])} |")
    gate = summary["gate"]
    lines += ["", f"Paired difference ({design.treatment} - {design.baseline}): {d['mean']:+.3f}, "
              f"95% crossed bootstrap interval [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}].",
              f"Competence gate ({design.gate}): {gate['value']:.3f}, {'passed' if gate['passed'] else 'FAILED'}.",
              f"Verdict (pre-registered rule): **{summary['verdict']}**."]
    return "\n".join(lines)


def write_results(out: Path, design: Design, rows: list[dict[str, Any]], summary: dict[str, Any],
                  extra: dict[str, Any] | None = None) -> str:
    """Write ``out/results.json`` and ``out/results.md``; returns the markdown."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    text = markdown(summary, design)
    report = {"design": asdict(design), "summary": summary, "rows": rows, "torch": torch.__version__,
              "machine": platform.platform(), "cpus": os.cpu_count(), "argv": sys.argv, **(extra or {})}
    (out / "results.json").write_text(json.dumps(report, indent=2))
    (out / "results.md").write_text(text + "\n")
    return text


def results_table(paths: Iterable[Path]) -> str:
    """The table at the top of pipelines/README.md: one row per committed results file."""
    lines = ["| method | claim | paper | ours: paired difference [95% CI] | verdict | reproduce |",
             "|---|---|---|---|---|---|"]
    for path in sorted(paths):
        report = json.loads(path.read_text())
        design, summary = report["design"], report["summary"]
        d = summary["difference"]
        ours = f"{d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
        lines.append(f"| {design['method']} | {design['claim']} | {design['paper']} | {ours} | {summary['verdict']} | "
                     f"`{design['command']}` |")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] == ["table"]:
        print(results_table(EXPERIMENTS.glob("*_results.json")))
    else:
        sys.exit("usage: python pipelines/experiments/claims.py table")
