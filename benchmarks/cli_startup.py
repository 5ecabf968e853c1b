"""Wall time of the CLI's instant commands (issue 12, part 9): ``medseg --help``, ``--version``, every
``medseg COMMAND --help`` and ``medseg info FILE``, each in a fresh process (the median of ``--repeats``).

Usage::

    python benchmarks/cli_startup.py [--repeats 5]

Budgets: under 1 s for the help texts and the version, under 2 s for ``info`` (on the 2-core machine).
tests/integration/test_cli_convention.py asserts the cause (no torch/MONAI import while building the help),
not the wall time, which depends on the machine's load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = ["demo", "train", "predict", "evaluate", "check", "info", "selfcheck", "register", "gateway"]


def wall(args: list[str], repeats: int) -> float:
    """Median wall seconds of ``python -m medseg ARGS`` in a fresh process."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "medseg", *args], check=True, capture_output=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    repeats = parser.parse_args().repeats
    import nibabel as nib
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "scan.nii.gz"
        nib.save(nib.Nifti1Image(np.zeros((64, 64, 32), np.int16), np.eye(4)), str(image))
        rows = [("--version", wall(["--version"], repeats), 1.0), ("--help", wall(["--help"], repeats), 1.0)]
        rows += [(f"{c} --help", wall([c, "--help"], repeats), 1.0) for c in COMMANDS]
        rows.append(("info FILE", wall(["info", str(image)], repeats), 2.0))
    print(f"| command | wall (s), median of {repeats} | budget (s) |\n|---|---|---|")
    for name, seconds, budget in rows:
        print(f"| `medseg {name}` | {seconds:.2f} | {budget:.0f} |")
    print(f"\nload average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
