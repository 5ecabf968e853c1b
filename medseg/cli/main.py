"""The ``medseg`` command: one Typer app, one module per command.

Errors for users are one line ``error: ...`` on stderr with a non-zero exit code; ``--debug`` (anywhere
on the command line) shows the traceback instead. Command modules import only Typer and light helpers at
the top (torch, MONAI and the rest load inside the command), so ``medseg --help``, ``medseg --version``
and every ``medseg COMMAND --help`` answer at once. Old option spellings (:data:`ALIASES`) still work for
one release, hidden from the help, with a warning naming the new one.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperArgument

from medseg._version import __version__
from medseg.errors import MedsegError

app = typer.Typer(
    name="medseg",
    help="Medical image segmentation and registration (PyTorch + MONAI).",
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
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


#: Old spellings of options, per command: ``{command: {old: new}}`` (rewritten before parsing; hidden).
ALIASES: dict[str, dict[str, str]] = {
    "train": {"--out": "--output"},
    "demo": {"--out": "--output"},
    "evaluate": {"--pred": "--input", "--ref": "--reference", "--out": "--output"},
    "check": {"--label": "--label-map", "--config": "--pipeline"},
    "register": {"--labels": "--moving-label-map", "--labels-out": "--moved-label-map", "--fixed-labels": "--fixed-label-map", "--report": "--qa"},
    "selfcheck": {"--models": "--model"},
}


def translate_aliases(args: list[str]) -> tuple[list[str], list[str]]:
    """``args`` with old option spellings replaced by the current ones, and one warning per old spelling used."""
    command = next((a for a in args if not a.startswith("-")), None)
    table = ALIASES.get(command or "", {})
    out: list[str] = []
    warnings: list[str] = []
    for position, arg in enumerate(args):
        if arg == "--":  # everything after it is a value
            out += args[position:]
            break
        name, eq, value = arg.partition("=")
        if name in table:
            out.append(table[name] + eq + value)
            warning = f"warning: {command} {name} is an old spelling; use {table[name]} (the old one goes in the next release)"
            if warning not in warnings:
                warnings.append(warning)
        else:
            out.append(arg)
    return out, warnings


def _register() -> None:
    from medseg.cli import (
        check,
        demo,
        ensemble,
        evaluate,
        export,
        gateway,
        info,
        plan,
        predict,
        register,
        selfcheck,
        train,
        view,
    )

    app.command("demo")(demo.demo)
    app.command("train")(train.train)
    app.command("predict")(predict.predict)
    app.command("evaluate")(evaluate.evaluate)
    app.command("check")(check.check)
    app.command("info")(info.info)
    app.command("selfcheck")(selfcheck.selfcheck)
    app.command("register")(register.register)
    app.command("gateway")(gateway.gateway)
    app.command("plan")(plan.plan)
    app.command("ensemble")(ensemble.ensemble)
    app.command("view")(view.view)
    app.command("export")(export.export)


_register()


class _PlainArgument(TyperArgument):
    """A positional argument shown by its metavar alone (``PATH...``), without Typer's ``<list[Path]>`` type."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = str(self.metavar or self.name) + ("..." if self.nargs != 1 else "")
        return name if self.required else f"[{name}]"


def command() -> Any:
    """The app as a click command, its positional arguments shown with plain metavars."""
    group = typer.main.get_command(app)
    for sub in getattr(group, "commands", {}).values():
        for param in sub.params:
            if type(param) is TyperArgument and param.metavar:
                param.__class__ = _PlainArgument
    return group


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
    if not args:  # a bare `medseg` prints its help
        args = ["--help"]
    args, warnings = translate_aliases(args)
    for warning in warnings:
        sys.stderr.write(warning + "\n")
    try:
        code = command()(args=args, prog_name="medseg", standalone_mode=False)
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
        fail(exc.format_message(), int(exc.exit_code) or 2)
    if debug:
        traceback.print_exc()
    fail(f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)")
