"""``medseg gateway --config gateway.yaml``: run medseg as a DICOM node until SIGTERM/SIGINT (see medseg.gateway)."""

from __future__ import annotations

import logging
from pathlib import Path

import typer


def gateway(
    config: Path = typer.Option(..., "--config", "-c", metavar="PATH", help="gateway.yaml: AE title, port, allowed callers, routes, destinations."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also log debug messages (HTTP requests)."),
) -> None:
    """Receive series over DICOM (C-STORE), segment each complete series, send the DICOM SEG back."""
    from medseg.gateway.config import load_gateway_config
    from medseg.gateway.service import Gateway

    settings = load_gateway_config(config)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # its INFO lines echo datasets (patient names)
    Gateway(settings).serve_forever()
