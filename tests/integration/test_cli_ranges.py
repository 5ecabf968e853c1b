"""Every numeric CLI option has a range, and a value outside it is one ``error:`` line naming the option."""

from __future__ import annotations

import typing

import pytest

from medseg.cli.main import command, main


def _numeric_options() -> list[tuple[str, typing.Any]]:
    out = []
    for name, sub in command().commands.items():
        for param in sub.params:
            annotation = param.type_descriptor.annotation
            kinds = set(typing.get_args(annotation)) or {annotation}
            if kinds & {int, float}:
                out.append((f"{name} {param.opts[0]}", param))
    return out


def test_every_numeric_option_has_a_range() -> None:
    options = _numeric_options()
    assert {"predict --overlap", "predict --sw-batch-size", "evaluate --tolerance", "train --epochs"} <= {n for n, _ in options}
    for name, param in options:
        parser = param.type_descriptor.parameter_info.parser
        assert param.min is not None or param.max is not None or hasattr(parser, "bounds"), f"{name} has no range"


#: (command line without the bad option, option, bad values); the rest of each line is valid enough to reach parsing
SWEEP = [
    (["predict", "-i", "a.nii.gz", "-o", "b.nii.gz", "-m", "m"], "--overlap", ["1.5", "1", "-1", "nan", "x"]),
    (["predict", "-i", "a.nii.gz", "-o", "b.nii.gz", "-m", "m"], "--sw-batch-size", ["0", "-2"]),
    (["evaluate", "-i", "a", "-r", "b", "-o", "c.csv"], "--tolerance", ["-0.5"]),
    (["train", "p.yaml", "-o", "run"], "--epochs", ["0"]),
    (["train", "p.yaml", "-o", "run"], "--folds", ["1"]),
    (["train", "p.yaml", "-o", "run"], "--fold", ["-1"]),
    (["demo", "-o", "out"], "--epochs", ["0"]),
    (["plan", "dataset"], "--folds", ["1"]),
]


@pytest.mark.parametrize(("args", "option", "value"), [(a, o, v) for a, o, values in SWEEP for v in values])
def test_out_of_range_value_is_an_error_naming_the_option(capsys: pytest.CaptureFixture[str], args: list[str], option: str, value: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*args, option, value])
    assert exc.value.code not in (0, None)
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and option in errors[0], errors
    assert "Traceback" not in errors[0]


def test_the_range_edges_are_accepted() -> None:
    from medseg.cli.options import number_in

    parse = number_in(0, 1, high_open=True)
    assert parse("0") == 0.0 and parse("0.99") == 0.99
