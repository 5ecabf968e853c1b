"""Export: every registered network exports to ONNX (ONNX Runtime agrees with PyTorch) or is refused in one line;
``medseg export`` writes ONNX / OpenVINO IR folders and refuses with ``error: ...``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.errors import MedsegModelError
from medseg.model.export import MAX_RELATIVE_DIFF, MIN_ARGMAX_AGREEMENT, agreement, export_onnx, refusal
from medseg.networks import create_network, get_network_spec, list_networks

ort = pytest.importorskip("onnxruntime")  # in the test extra: CI runs the sweep
CASES = [(name, dims) for name in list_networks() for dims in get_network_spec(name).spatial_dims]


@pytest.mark.parametrize(("name", "dims"), CASES, ids=[f"{n}-{d}d" for n, d in CASES])
def test_every_network_exports_or_is_refused(name: str, dims: int, tmp_path: Path) -> None:
    spec = get_network_spec(name)
    kwargs = spec.tiny_kwargs(dims)
    reason = refusal(name, spec.output_kind)
    if reason is not None:
        assert "\n" not in reason and name in reason
        return
    torch.manual_seed(0)
    net = create_network(name, **kwargs).eval()
    (example,) = spec.make_example_inputs(dims, kwargs)
    channels, patch = example.shape[1], tuple(example.shape[2:])
    target = tmp_path / "model.onnx"
    dynamic, _, _ = export_onnx(net, channels, patch, target)
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    sizes = [patch] + ([(2 * patch[0], *patch[1:])] if dynamic else [])
    for size in sizes:  # our own comparison, independent of export_onnx's check
        x = torch.randn(2, channels, *size)
        with torch.no_grad():
            ref = net(x).numpy()
        out = session.run(None, {"image": x.numpy()})[0]
        diff, same = agreement(ref, out)
        assert out.shape == ref.shape
        assert diff <= MAX_RELATIVE_DIFF and same >= MIN_ARGMAX_AGREEMENT, (size, diff, same)


def test_a_graph_with_a_baked_size_is_exported_at_the_patch_size(tmp_path: Path) -> None:
    """A network whose traced graph fixes its spatial size is exported static (checked at a second size)."""

    class Baked(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv3d(1, 2, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.nn.functional.avg_pool3d(self.conv(x), 2)
            return torch.nn.functional.interpolate(y, size=[int(s) for s in x.shape[2:]], mode="trilinear")  # int(): traced as constants

    dynamic, diff, same = export_onnx(Baked().eval(), 1, (8, 8, 8), tmp_path / "m.onnx")
    assert not dynamic and diff <= MAX_RELATIVE_DIFF and same >= MIN_ARGMAX_AGREEMENT
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert session.run(None, {"image": np.zeros((3, 1, 8, 8, 8), np.float32)})[0].shape == (3, 2, 8, 8, 8)  # batch stays dynamic


def test_a_failing_exporter_is_one_line(tmp_path: Path) -> None:
    class NoExport(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.adaptive_avg_pool3d(x, 1).expand_as(x) + torch.fft.fftn(x).real

    with pytest.raises(MedsegModelError, match="ONNX export failed") as info:
        export_onnx(NoExport().eval(), 1, (4, 4, 4), tmp_path / "m.onnx")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_cli_export(tmp_path: Path, tiny_model: Path, fmt: str, capsys) -> None:
    if fmt == "openvino":
        pytest.importorskip("openvino")
    from medseg.cli.main import main

    out = tmp_path / f"exported-{fmt}"
    main(["export", str(tiny_model), "--format", fmt, "-o", str(out)])
    info = json.loads((out / "export.json").read_text())
    assert info["format"] == fmt and info["channels"] == 1 and info["dynamic"] is True
    assert sorted(p.name for p in out.iterdir()) == (["export.json", "model.onnx"] if fmt == "onnx" else ["export.json", "model.bin", "model.xml"])
    assert "argmax agreement" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:  # exists: one-line error, nothing changed
        main(["export", str(tiny_model), "--format", fmt, "-o", str(out)])
    assert exit_info.value.code == 1 and "already exists" in capsys.readouterr().err


def test_cli_export_refuses_unknown_formats_and_registration_networks(tmp_path: Path, tiny_model: Path, capsys) -> None:
    from medseg.cli.main import main

    with pytest.raises(SystemExit):
        main(["export", str(tiny_model), "--format", "tflite", "-o", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert err.startswith("error: --format tflite") and err.count("\n") == 1 and not (tmp_path / "x").exists()
    assert "registration network" in (refusal("voxelmorph", get_network_spec("voxelmorph").output_kind) or "")


@pytest.mark.parametrize("slice_axis", [0, 2])
def test_slice_wise_2d_networks_export(slice_axis: int, tmp_path: Path) -> None:
    """A package's 2D network runs slice by slice inside SliceWise (``network.slice_axis``): that wrapper exports too."""
    from medseg.networks.blocks.slicewise import SliceWise

    net = SliceWise(create_network("ivdnet", **get_network_spec("ivdnet").tiny_kwargs(2)), slice_axis).eval()
    dynamic, diff, same = export_onnx(net, 4, (32, 32, 16), tmp_path / "m.onnx")
    assert dynamic and diff <= MAX_RELATIVE_DIFF and same >= MIN_ARGMAX_AGREEMENT
