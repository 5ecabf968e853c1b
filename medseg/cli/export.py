"""``medseg export``: a model package's network as ONNX or OpenVINO IR (see README 'Speed')."""

from __future__ import annotations

from pathlib import Path

import typer


def export(
    model: Path = typer.Argument(..., metavar="PATH", help="Model package folder."),
    fmt: str = typer.Option("onnx", "--format", metavar="TEXT", help="onnx or openvino."),
    output: Path | None = typer.Option(None, "-o", "--output", metavar="PATH", help="Output folder (default: ./PACKAGE-FORMAT)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output folder."),
) -> None:
    """Export the package's network (dynamic spatial size where the network allows it, else the patch size)."""
    from medseg.model.export import export_package
    from medseg.model.package import load_model_package

    package = load_model_package(model, "cpu")
    target = output or Path(f"{Path(model).resolve().name}-{fmt}")
    info = export_package(package, fmt, target, force)
    size = "dynamic spatial size" if info.dynamic else f"fixed size {'x'.join(map(str, info.patch_size))}"
    typer.echo(f"{target / info.file}: {info.format}, {info.channels} input channel(s), {size}; "
               f"max logit difference {info.max_relative_diff:.1e} of the range, argmax agreement {info.argmax_agreement:.5f} vs PyTorch")
