"""The ``medseg`` command: one Typer app, one module per command.

Errors for users are one line ``error: ...`` on stderr with a non-zero exit code; ``--debug`` (anywhere
on the command line) shows the traceback instead.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence

import typer

from medseg._version import __version__
from medseg.errors import MedsegError

app = typer.Typer(
    name="medseg",
    help="Medical image segmentation and registration (PyTorch + MONAI).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"medseg {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
) -> None:
    """medseg: H-DenseUNet, IVD-Net, nested-class BraTS, MICDIR and DSAIF on one data path."""


def _register() -> None:
    from medseg.cli import check, demo, evaluate, export, gateway, info, predict, register, selfcheck, train

    app.command("demo")(demo.demo)
    app.command("train")(train.train)
    app.command("predict")(predict.predict)
    app.command("evaluate")(evaluate.evaluate)
    app.command("check")(check.check)
    app.command("info")(info.info)
    app.command("selfcheck")(selfcheck.selfcheck)
    app.command("register")(register.register)
    app.command("gateway")(gateway.gateway)
    app.command("export")(export.export)


_register()


def fail(message: str, code: int = 1) -> None:
    """Print ``error: message`` (one line) on stderr and exit with ``code``."""
    line = " ".join(str(message).split())
    sys.stderr.write(f"error: {line}\n")
    sys.stderr.flush()
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    try:
        code = app(args=args, prog_name="medseg", standalone_mode=False)
        if isinstance(code, int) and code:  # typer.Exit(n) comes back as a return value here
            raise SystemExit(code)
    except MedsegError as exc:
        if debug:
            traceback.print_exc()
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except SystemExit:
        raise
    except Exception as exc:
        _handle_other(exc, debug)


def _handle_other(exc: Exception, debug: bool) -> None:
    """Typer's own signals (exit, abort, usage errors from its bundled click), else an unexpected error."""
    if isinstance(exc, typer.Exit) or type(exc).__name__ == "Exit":
        raise SystemExit(getattr(exc, "exit_code", 0)) from None
    if isinstance(exc, typer.Abort) or type(exc).__name__ == "Abort":
        fail("aborted", 130)
    if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # click/typer usage errors
        fail(exc.format_message(), int(exc.exit_code) or 2)  # type: ignore[attr-defined]
    if debug:
        traceback.print_exc()
    fail(f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)")
