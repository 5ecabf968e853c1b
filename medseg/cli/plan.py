"""``medseg plan``: fingerprint a dataset and write a pipeline YAML planned for it, or ``--check`` it first."""

from __future__ import annotations

from pathlib import Path

import typer


def plan(
    dataset: Path = typer.Argument(..., metavar="PATH", help="dataset.json, an imagesTr/labelsTr folder, or a release read by --layout."),
    out: Path | None = typer.Option(None, "--output", "-o", metavar="PATH", help="Pipeline YAML to write (fingerprint.json goes next to it)."),
    method: str = typer.Option("unet", "--method", metavar="TEXT", help="unet, hdenseunet, ivdnet, nested, dsaif; micdir, voxelmorph (DATASET: a pair source)."),
    gpu_memory: str | None = typer.Option(None, "--gpu-memory", metavar="TEXT", help="Plan for a GPU of this size, e.g. 24GB (measured when one is here)."),
    device: str = typer.Option("auto", "--device", metavar="TEXT", help="auto (the GPU here, else CPU), cpu, cuda, cuda:N."),
    layout: str = typer.Option("auto", "--layout", metavar="TEXT", help="Dataset layout (auto, lits, brats, ivdm3seg, ...)."),
    modalities: str | None = typer.Option(None, "--modalities", metavar="TEXT", help="Channel names, e.g. T1,T1ce,T2,FLAIR (default: dataset.json / guessed)."),
    folds: int = typer.Option(5, "--folds", min=2, metavar="N", help="Folds the warnings are about."),
    check: bool = typer.Option(False, "--check", help="Only report what would break training, and planning warnings."),
) -> None:
    """Plan a pipeline from a dataset (nnU-Net-style rules, every value commented with its reason)."""
    from medseg.errors import MedsegConfigError
    from medseg.planning.plan import plan_dataset, preflight, resolve_target

    names = [m.strip() for m in modalities.split(",")] if modalities else None
    if check:
        problems, warnings = preflight(dataset, layout, names, folds)
        for problem in problems:
            typer.echo(str(problem))
        for warning in warnings:
            typer.echo(f"warning: {warning}")
        if problems:
            typer.echo(f"{len(problems)} problem(s) would stop training", err=True)
            raise typer.Exit(1)
        typer.echo(f"ok: nothing would stop training ({len(warnings)} warning(s))")
        return
    if out is None:
        raise MedsegConfigError("medseg plan: give -o PIPELINE.yaml (or --check)")
    result = plan_dataset(dataset, out, method=method, target=resolve_target(gpu_memory, device), layout=layout, modalities=names)
    for line in result["notes"]:
        typer.echo(f"note: {line}")
    for warning in result["warnings"]:
        typer.echo(f"warning: {warning}")
    typer.echo(f"fingerprint: {result['fingerprint']}")
    typer.echo(f"pipeline: {result['pipeline']}")
