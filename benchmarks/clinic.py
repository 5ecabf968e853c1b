"""What the clinic outputs cost: one CT phantom through ``medseg predict``'s case runner, NIfTI vs DICOM in,
NIfTI vs DICOM SEG out, with and without report and uncertainty; prints a markdown table of seconds per
phase (median of ``--repeats``) and peak memory.

    python -m benchmarks.clinic [--model MODEL_DIR] [--repeats 3] [--shape 160 160 80]

Without ``--model`` it trains the test suite's tiny pipeline for 2 epochs (the timings are about I/O and
output writing, not about accuracy; the network part scales with the model you give).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from medseg.model.package import describe, load_model_package
from medseg.inference.batch import PHASES, RunContext, predict_case, targets_for_file
from medseg.inference.cases import single_case
from medseg.inference.predictor import Predictor
from medseg.io.dicom_write import write_dicom_series
from medseg.io.geometry import Geometry
from medseg.io.image_io import write_image

CONFIGS = [  # (name, input, output format, report, uncertainty)
    ("NIfTI in, NIfTI out", "nifti", "nifti", False, False),
    ("DICOM in, NIfTI out", "dicom", "nifti", False, False),
    ("DICOM in, DICOM SEG out", "dicom", "dicom-seg", False, False),
    ("DICOM in, both out, report", "dicom", "both", True, False),
    ("DICOM in, both out, report, uncertainty", "dicom", "both", True, True),
]


def _tiny_model(root: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import write_pipeline  # the suite's tiny pipeline

    from medseg.config import load_pipeline
    from medseg.engine.trainer import Trainer

    config = write_pipeline(root / "tiny.yaml", **{"train.epochs": 2})
    Trainer(load_pipeline(config), root / "run", device="cpu", progress=False).fit()
    return root / "run" / "model"


def _phantom(root: Path, shape: tuple[int, int, int]) -> tuple[Path, Path]:
    from medseg.data.synthetic import CTPhantomSpec, ct_phantom

    spacing = (0.8, 0.8, 2.5)
    spec = CTPhantomSpec(field_of_view_mm=tuple(n * s for n, s in zip(shape, spacing)), spacing_xy_mm=(0.8, 0.8), spacing_z_mm=(2.5, 2.5))
    image, _, affine = ct_phantom(0, spec)
    image = np.rint(image).astype(np.float32)
    geometry = Geometry(image.shape, affine)
    nifti = write_image(root / "ct.nii.gz", image, geometry, "image")
    write_dicom_series(root / "series", image, geometry, seed="bench")
    return nifti, root / "series"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shape", type=int, nargs=3, default=(160, 160, 80))
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    root = Path(tempfile.mkdtemp(prefix="medseg-clinic-bench-"))
    model = args.model or _tiny_model(root)
    nifti, series = _phantom(root, tuple(args.shape))
    package = load_model_package(model)
    context = RunContext(Predictor(package, torch.device("cpu")), "CPU requested", describe(package))
    print(f"model {package.manifest.name} ({package.manifest.network.name}), phantom {tuple(args.shape)} at 0.8 x 0.8 x 2.5 mm, "
          f"{args.repeats} repeats, torch threads {torch.get_num_threads()}\n")
    print("| configuration | " + " | ".join(f"{p} (s)" for p in PHASES) + " | peak RSS (MB) |")
    print("|---|" + "---|" * (len(PHASES) + 1))
    for run_index, (name, source, fmt, report, uncertainty) in enumerate(CONFIGS):
        rows = []
        for repeat in range(args.repeats):
            out = root / f"out{run_index}_{repeat}" / ("case.seg.dcm" if fmt == "dicom-seg" else "case.nii.gz")
            targets = targets_for_file(out, fmt, report, uncertainty)
            case = single_case([series if source == "dicom" else nifti])
            rows.append(predict_case(context, case, targets))
        cells = [f"{statistics.median(r.timings[p] for r in rows):.2f}" for p in PHASES]
        print(f"| {name} | " + " | ".join(cells) + f" | {max(r.peak_rss_mb or 0 for r in rows):.0f} |")
    print(f"\n(files under {root}; {time.strftime('%Y-%m-%d')})")


if __name__ == "__main__":
    main()
