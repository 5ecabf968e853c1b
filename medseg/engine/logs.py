"""Per-epoch logs of a run: ``metrics.csv``, ``progress.png`` and TensorBoard (when installed)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from medseg.io.atomic import atomic_path, write_text


class RunLog:
    """Keeps the rows of every epoch and rewrites the files after each one (atomically)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.rows: list[dict[str, Any]] = []
        self._tb: Any = None

    def restore(self, rows: list[dict[str, Any]]) -> None:
        self.rows = [dict(r) for r in rows]

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self._write_csv()
        self._plot()
        self._tensorboard(row)

    def _write_csv(self) -> None:
        keys: list[str] = []
        for row in self.rows:
            keys += [k for k in row if k not in keys]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=keys)
        writer.writeheader()
        writer.writerows(self.rows)
        write_text(self.run_dir / "metrics.csv", buffer.getvalue())

    def _plot(self) -> None:
        from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend (e.g. a notebook's) alone

        epochs = [r["epoch"] for r in self.rows]
        fig = Figure(figsize=(6, 3.5), dpi=100)
        ax = fig.subplots()
        for key in [k for k in self.rows[-1] if k.startswith("loss")]:
            ax.plot(epochs, [r.get(key) for r in self.rows], label=key)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        val = [(r["epoch"], r["val_score"]) for r in self.rows if "val_score" in r]
        if val:
            ax2 = ax.twinx()
            ax2.plot(*zip(*val), "o-", color="tab:green", label="val_score")
            ax2.set_ylabel("validation score")
            ax2.set_ylim(0, 1)
        fig.legend(loc="upper right", fontsize=8)
        fig.tight_layout()
        with atomic_path(self.run_dir / "progress.png") as tmp:
            fig.savefig(tmp, format="png")

    def _tensorboard(self, row: dict[str, Any]) -> None:
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                self._tb = False
                return
            self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))
        if self._tb:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self._tb.add_scalar(key, value, row["epoch"])
            self._tb.flush()


__all__ = ["RunLog"]
