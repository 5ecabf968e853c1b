from __future__ import annotations

import random

import numpy as np
import torch

from medseg.engine.state_io import load_state, rng_state, save_state, set_rng_state


def test_optimizer_state_round_trip_without_pickle(tmp_path) -> None:
    net = torch.nn.Linear(4, 3)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.randn(2, 4)).sum().backward()
    opt.step()
    save_state(tmp_path, "optimizer", opt.state_dict())
    assert not any(p.suffix in {".pt", ".pth", ".pkl"} for p in tmp_path.iterdir())
    loaded = load_state(tmp_path, "optimizer")
    opt2 = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(loaded)
    for key, value in opt.state_dict()["state"].items():
        torch.testing.assert_close(opt2.state_dict()["state"][key]["momentum_buffer"], value["momentum_buffer"])
    assert opt2.state_dict()["param_groups"] == opt.state_dict()["param_groups"]


def test_rng_state_round_trip(tmp_path) -> None:
    save_state(tmp_path, "rng", rng_state())
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(load_state(tmp_path, "rng"))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
