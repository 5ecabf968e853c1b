"""``medseg demo``: options and printing; the run is medseg.engine.demo.run_demo."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer

from medseg.cli.options import DEVICE, QUIET


def demo(
    out: Path = typer.Option(Path("medseg-demo"), "-o", "--output", metavar="PATH", help="Output folder."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, metavar="N", help="Override the demo's training epochs."),
    device: str = DEVICE,
    force: bool = typer.Option(False, "--force", help="Replace an existing output folder's run."),
    quiet: bool = QUIET,
) -> None:
    """Train a small 3D UNet on CT phantoms and segment a held-out case (a few minutes on a CPU)."""
    from rich.table import Table

    from medseg.engine.demo import OUTPUTS, run_demo
    from medseg.engine.interrupt import INTERRUPTED_EXIT, TrainingInterrupted
    from medseg.progress import console, set_quiet

    set_quiet(quiet)
    try:
        result = run_demo(out, epochs, device, force, progress=not quiet)
    except TrainingInterrupted as stopped:
        typer.echo(f"{stopped}; start again with: {shlex.join(['medseg', 'demo', '-o', str(out), '--force'])}", err=True)
        raise typer.Exit(INTERRUPTED_EXIT) from None
    metrics, names = result.metrics, result.label_names
    spacing = " x ".join(f"{s:.2f}" for s in metrics["spacing_mm"])
    table = Table(title=f"held-out case {metrics['case']} ({metrics['orientation']}, {spacing} mm)")
    for column in ("label", "Dice", "HD95 (mm)", "volume pred / ref (ml)"):
        table.add_column(column)
    for r in result.rows:
        table.add_row(names[r["label"]], f"{r['dice']:.3f}", f"{r['hd95_mm']:.1f}", f"{r['volume_pred_ml']:.1f} / {r['volume_ref_ml']:.1f}")
    out_console = console.__class__(file=sys.stdout, highlight=False)
    out_console.print(table)
    out_console.print(f"mean foreground Dice: [bold]{metrics['mean_foreground_dice']:.3f}[/] ({metrics['threads']} CPU threads)   total time: {metrics['total_seconds']:.0f} s")
    for name in OUTPUTS:
        out_console.print(f"  {out / name}")
    command = ["medseg", "predict", "-i", str(result.image), "-o", "prediction.nii.gz", "-m", str((out / "model").resolve())]
    out_console.print("reuse the model with:")
    typer.echo(shlex.join(command))
