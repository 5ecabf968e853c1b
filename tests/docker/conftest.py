"""Docker tests run only when asked for with ``-m docker`` (``.ci/run`` does, when a daemon is available):
``make test`` must not need Docker. Without a ``-m`` expression they are deselected, not skipped."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("markexpr"):
        return  # an explicit -m expression decides
    deselected = [item for item in items if item.get_closest_marker("docker")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("docker")]
