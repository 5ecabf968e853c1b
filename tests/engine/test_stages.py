"""Staged pipelines: merging, stage references, validation messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medseg.config.stages import deep_merge, is_staged, load_stages
from medseg.engine.stages import run_stages
from medseg.errors import MedsegConfigError, MedsegOutputError
from tests.conftest import TINY_PIPELINE


def _write(path: Path, stages: object, **top: object) -> Path:
    config = {**yaml.safe_load(yaml.safe_dump(TINY_PIPELINE)), **top, "stages": stages}
    path.write_text(yaml.safe_dump(config))
    return path


def test_deep_merge_merges_mappings_and_replaces_the_rest() -> None:
    base = {"train": {"epochs": 2, "lr": 0.1}, "network": {"name": "unet", "kwargs": {"a": 1}}, "x": [1]}
    merged = deep_merge(base, {"train": {"epochs": 5}, "network": {"kwargs": {"b": 2}}, "x": [2]})
    assert merged == {"train": {"epochs": 5, "lr": 0.1}, "network": {"name": "unet", "kwargs": {"a": 1, "b": 2}}, "x": [2]}
    assert base["train"]["epochs"] == 2


def test_deep_merge_replaces_a_section_of_another_kind() -> None:
    """A stage's ``output: {kind: labels}`` over ``{kind: liver_tumor, ...}`` keeps none of liver_tumor's options."""
    base = {"output": {"kind": "liver_tumor", "liver_threshold": 0.5}}
    assert deep_merge(base, {"output": {"kind": "labels"}}) == {"output": {"kind": "labels"}}
    assert deep_merge(base, {"output": {"liver_threshold": 0.4}}) == {"output": {"kind": "liver_tumor", "liver_threshold": 0.4}}


def test_stages_resolve_earlier_stages_and_share_the_top(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "s.yaml",
        [
            {"name": "first", "train": {"epochs": 1}},
            {"name": "second", "network": {"init_from": "stage:first"}, "roi": {"localiser": "stage:first"}},
        ],
    )
    assert is_staged(path)
    first, second = load_stages(path, tmp_path / "run")
    assert (first.name, first.config.name, first.config.train.epochs) == ("first", "tiny_first", 1)
    assert second.config.train.epochs == TINY_PIPELINE["train"]["epochs"]
    expected = str((tmp_path / "run" / "first" / "model").resolve())
    assert second.config.network.init_from is not None and second.config.network.init_from.path == expected
    assert second.config.roi is not None and second.config.roi.localiser == expected
    assert second.run_dir == (tmp_path / "run" / "second").resolve()


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ([], "non-empty list"),
        ([{"train": {"epochs": 1}}], "needs a 'name'"),
        ([{"name": "a"}, {"name": "a"}], "used twice"),
        ([{"name": "a", "network": {"init_from": "stage:b"}}, {"name": "b"}], "does not name an earlier stage"),
        ([{"name": "a"}, {"name": "b", "train": {"epoch": 3}}], r"stages\[1\] \(b\): train.epoch: unknown key"),
    ],
)
def test_bad_stages_are_one_line_errors(tmp_path: Path, stages: object, message: str) -> None:
    with pytest.raises(MedsegConfigError, match=message):
        load_stages(_write(tmp_path / "s.yaml", stages), tmp_path / "run")


def test_run_folder_rules_and_unknown_stage(tmp_path: Path) -> None:
    path = _write(tmp_path / "s.yaml", [{"name": "a"}])
    with pytest.raises(MedsegConfigError, match="no stage 'b'"):
        run_stages(path, tmp_path / "run", only="b")
    (tmp_path / "busy" / "a/checkpoints" / "last").mkdir(parents=True)  # a run with a checkpoint is not replaced silently
    with pytest.raises(MedsegOutputError, match="--resume"):
        run_stages(path, tmp_path / "busy")
