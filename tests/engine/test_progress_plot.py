"""progress.png shows the loss, the learning rate, every validation metric the head reports and the best
epoch, with legends that cover neither data nor ticks."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.engine.logs import RunLog, progress_figure


def rows_with(scores: dict[str, list[float]], extra: dict[str, list[float]] | None = None) -> list[dict]:
    n = len(next(iter(scores.values())))
    rows = []
    for e in range(n):
        row = {"epoch": e + 1, "lr": 0.01 * 0.9**e, "loss": 1.0 / (e + 1), "loss_ce": 0.5 / (e + 1)}
        row |= {f"val_dice_{k}": v[e] for k, v in scores.items()} | {k: v[e] for k, v in (extra or {}).items()}
        row["val_score"] = float(np.mean([v[e] for v in scores.values()]))
        rows.append(row)
    return rows


def legend_labels(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


@pytest.mark.parametrize("heads", [["liver", "tumour"], ["WT", "TC", "ET"]])
def test_every_metric_of_the_head_and_the_best_epoch(heads: list[str]) -> None:
    curves = {name: list(np.linspace(0.2, 0.9, 6) * (1 - 0.1 * k)) for k, name in enumerate(heads)}
    for name in heads:
        curves[name][3] = 1.0  # epoch 4 is the best mean
    rows = rows_with(curves)
    fig = progress_figure(rows)
    loss_ax, lr_ax, val_ax = fig.axes
    assert {"loss", "loss_ce"} <= set(legend_labels(loss_ax))
    assert lr_ax.get_yscale() == "log" and "lr" in legend_labels(lr_ax)
    assert [f"Dice {h}" for h in heads] + ["mean (val_score)"] == legend_labels(val_ax)[: len(heads) + 1]
    best = max(rows, key=lambda r: r["val_score"])["epoch"]
    assert best == 4
    for ax in fig.axes:  # the best epoch is marked in every panel
        assert f"best epoch {best}" in legend_labels(ax)
        assert any(list(line.get_xdata()) == [best, best] for line in ax.get_lines())
    assert "best epoch 4" in fig._suptitle.get_text()
    lo, hi = val_ax.get_ylim()
    assert lo < 0 and hi > 1.0  # the 1.0 tick is inside the axes
    fig.draw_without_rendering()
    for ax in fig.axes:  # legends sit right of the axes (and so of their tick labels, which are on the left)
        assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1


def test_registration_dice_and_folding(tmp_path) -> None:
    rows = rows_with({"grey": [0.5, 0.6, 0.7], "white": [0.4, 0.5, 0.6]},
                     {"val_dice_identity": [0.3] * 3, "val_folding": [0.001, 0.002, 0.004], "val_loss": [-0.1, -0.2, -0.3]})
    fig = progress_figure(rows)
    assert len(fig.axes) == 4
    assert "validation loss" in legend_labels(fig.axes[0])
    assert "Dice before registration" in legend_labels(fig.axes[2])
    folding = fig.axes[3]
    assert folding.get_lines()[0].get_ydata()[-1] == pytest.approx(0.4)  # in percent
    log = RunLog(tmp_path)
    for row in rows:
        log.append(row)
    assert (tmp_path / "progress.png").stat().st_size > 10_000 and (tmp_path / "metrics.csv").is_file()


def test_without_validation() -> None:
    fig = progress_figure([{"epoch": 1, "lr": 0.1, "loss": 1.0}, {"epoch": 2, "lr": 0.1, "loss": 0.5}])
    assert len(fig.axes) == 2 and fig._suptitle is None


def test_learning_rate_that_reaches_zero_is_plotted_linearly() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = progress_figure([{"epoch": 1, "lr": 0.1, "loss": 1.0}, {"epoch": 2, "lr": 0.0, "loss": 0.5}])
        fig.draw_without_rendering()
    assert fig.axes[1].get_yscale() == "linear"
