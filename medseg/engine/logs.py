"""Per-epoch logs of a run: ``metrics.csv``, ``progress.png`` and TensorBoard (when installed)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from medseg.io.atomic import atomic_path, write_text
from medseg.palette import label_hex


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
        fig = progress_figure(self.rows)
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


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """``(epochs, values)`` of the rows that hold a number under ``key``."""
    pairs = [(r["epoch"], float(r[key])) for r in rows if isinstance(r.get(key), (int, float))]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def progress_figure(rows: list[dict[str, Any]]) -> Any:
    """The training curves as a matplotlib ``Figure``, one panel per kind of value, epochs shared:
    the losses (``loss*`` and ``val_loss``), the learning rate (``lr``), every validation score the head
    reports (``val_dice_<label>`` or ``val_dice_WT/TC/ET``, registration's ``val_dice_identity``, and
    their mean ``val_score``) and registration's folding fraction (``val_folding``). The best epoch (highest
    ``val_score``) is marked in every panel; legends sit outside the axes, so they hide no data or ticks."""
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend (e.g. a notebook's) alone

    keys = list(dict.fromkeys(k for r in rows for k in r))
    losses = [k for k in keys if k.startswith("loss") or k == "val_loss"]
    scores = [k for k in keys if k.startswith("val_dice_")] + (["val_score"] if "val_score" in keys else [])
    panels = [p for p in (("loss", losses), ("learning rate", ["lr"] if "lr" in keys else []), ("validation score", scores),
                          ("folding (% of voxels)", ["val_folding"] if "val_folding" in keys else [])) if p[1]]
    best = max(zip(*_series(rows, "val_score")), key=lambda p: p[1], default=None)
    fig = Figure(figsize=(8.5, 1.2 + 2.1 * len(panels)), dpi=100, facecolor="white")
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (ylabel, panel_keys) in zip(axes, panels):
        ax.set_prop_cycle(color=[label_hex(v) for v in (5, 1, 3, 2, 6, 7, 4)])  # Okabe-Ito, darkest first
        for key in panel_keys:
            epochs, values = _series(rows, key)
            if key == "val_folding":
                values = [100 * v for v in values]
            mean = key == "val_score"
            ax.plot(epochs, values, marker="o" if key.startswith("val_") else None, markersize=3, label=_legend_name(key),
                    color="black" if mean else None, linewidth=2.2 if mean else 1.4, linestyle="--" if mean else "-")
        positive = all(v > 0 for k in panel_keys for v in _series(rows, k)[1])  # a poly schedule may end at lr 0
        if positive and (ylabel == "learning rate" or (ylabel == "loss" and _spread(rows, panel_keys) > 30)):
            ax.set_yscale("log")
        if ylabel == "validation score" and all(0 <= v <= 1 for k in panel_keys for v in _series(rows, k)[1]):
            ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if best is not None:
            ax.axvline(best[0], color="#666666", linestyle=":", linewidth=1.5, label=f"best epoch {best[0]}")
            if "val_score" in panel_keys:
                ax.plot([best[0]], [best[1]], marker="*", markersize=14, color="black", linestyle="none")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    if best is not None:
        fig.suptitle(f"best epoch {best[0]}: val_score {best[1]:.4f}", fontsize=10)
    axes[-1].set_xlabel("epoch")
    axes[-1].xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return fig


def _legend_name(key: str) -> str:
    if key == "val_score":
        return "mean (val_score)"
    if key == "val_dice_identity":
        return "Dice before registration"
    if key.startswith("val_dice_"):
        return f"Dice {key.removeprefix('val_dice_')}"
    return {"val_loss": "validation loss", "val_folding": "folding"}.get(key, key)


def _spread(rows: list[dict[str, Any]], keys: list[str]) -> float:
    values = [v for k in keys for v in _series(rows, k)[1] if v > 0]
    return max(values) / min(values) if values else 1.0


__all__ = ["RunLog", "progress_figure"]
