"""deterministic: true fixes torch's thread count (the trained weights depend on it), so figures reproduce."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from medseg.config import load_pipeline
from medseg.config.sections import DETERMINISTIC_THREADS
from medseg.engine.trainer import Trainer
from tests.conftest import write_pipeline


@pytest.fixture
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("deterministic", "threads", "expected"),
    [(True, None, DETERMINISTIC_THREADS), (True, 3, 3), (False, 3, 3), (False, None, 1)],
)
def test_training_sets_the_thread_count(tmp_path: Path, one_thread: None, deterministic: bool, threads: int | None, expected: int) -> None:
    config = load_pipeline(write_pipeline(tmp_path / "p.yaml", deterministic=deterministic, **{"train.threads": threads}))
    Trainer(config, tmp_path / "run", device="cpu", progress=False).setup()
    assert torch.get_num_threads() == expected


def test_the_demo_states_its_thread_count() -> None:
    demo = load_pipeline(Path(__file__).resolve().parents[2] / "pipelines" / "demo.yaml")
    assert demo.deterministic and demo.train.threads == 2
