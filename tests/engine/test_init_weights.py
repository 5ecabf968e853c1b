"""network.init_from: whole networks and submodules from packages, run folders and safetensors files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file, save_model

from medseg.config import InitConfig, NetworkConfig, PreprocessConfig
from medseg.engine.init_weights import initialise_network
from medseg.model.package import ModelManifest, build_network, save_model_package
from medseg.errors import MedsegConfigError
from medseg.networks import get_network_spec

TINY_2D = get_network_spec("dense_unet_2d").tiny_kwargs(2)
TINY_HYBRID = get_network_spec("hdenseunet").tiny_kwargs(3)


def _package(path: Path, config: NetworkConfig) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(1)
    net = build_network(config)
    manifest = ModelManifest(
        name="stage1", network=config, labels={0: "b", 1: "l", 2: "t"}, modalities=["CT"],
        preprocess=PreprocessConfig(), patch_size=(32, 32, 1),
    )
    return save_model_package(path, net, manifest), net


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_2d_stage_into_the_hybrid_from_a_package_and_a_run_folder(tmp_path: Path) -> None:
    config = NetworkConfig(name="dense_unet_2d", kwargs=TINY_2D, slice_axis=2, slice_context=1)
    package, stage1 = _package(tmp_path / "run" / "model", config)
    for source in (package, tmp_path / "run"):
        torch.manual_seed(2)
        hybrid = build_network(NetworkConfig(name="hdenseunet", kwargs=TINY_HYBRID))
        before = {k: v.clone() for k, v in hybrid.net3d.state_dict().items()}
        report = initialise_network(hybrid, InitConfig(path=str(source), target="net2d"))
        assert _same(hybrid.net2d, stage1.net)  # SliceWise looked through
        assert all(torch.equal(before[k], v) for k, v in hybrid.net3d.state_dict().items())  # the rest untouched
        assert report["loaded"] == len(stage1.net.state_dict()) and report["skipped"] == 0
        assert len(report["sha256"]) == 64


def test_prefix_takes_a_part_and_relative_paths_use_the_base(tmp_path: Path) -> None:
    torch.manual_seed(3)
    hybrid = build_network(NetworkConfig(name="hdenseunet", kwargs=TINY_HYBRID))
    save_model(hybrid, str(tmp_path / "hybrid.safetensors"))
    net2d = build_network(NetworkConfig(name="dense_unet_2d", kwargs=TINY_2D))
    initialise_network(net2d, InitConfig(path="hybrid.safetensors", prefix="net2d."), base=tmp_path)
    assert _same(net2d, hybrid.net2d)
    whole = build_network(NetworkConfig(name="hdenseunet", kwargs=TINY_HYBRID))
    initialise_network(whole, InitConfig(path=str(tmp_path / "hybrid.safetensors")))
    assert _same(whole, hybrid)


def test_checkpoint_folder_of_a_run_without_export(tmp_path: Path) -> None:
    net = build_network(NetworkConfig(name="dense_unet_2d", kwargs=TINY_2D))
    (tmp_path / "run" / "checkpoints" / "last").mkdir(parents=True)
    save_model(net, str(tmp_path / "run" / "checkpoints" / "last" / "model.safetensors"))
    other = build_network(NetworkConfig(name="dense_unet_2d", kwargs=TINY_2D))
    initialise_network(other, InitConfig(path=str(tmp_path / "run")))
    assert _same(other, net)


def test_mismatches_are_one_line_errors_unless_not_strict(tmp_path: Path) -> None:
    net = build_network(NetworkConfig(name="dense_unet_2d", kwargs=TINY_2D))
    save_model(net, str(tmp_path / "w.safetensors"))
    wider = build_network(NetworkConfig(name="dense_unet_2d", kwargs={**TINY_2D, "out_channels": 4}))
    with pytest.raises(MedsegConfigError, match=r"shape .* at 'head.weight'"):
        initialise_network(wider, InitConfig(path=str(tmp_path / "w.safetensors")))
    report = initialise_network(wider, InitConfig(path=str(tmp_path / "w.safetensors"), strict=False))
    assert report["skipped"] == 2 and torch.equal(wider.encoder.state_dict()["features.conv0.weight"], net.encoder.state_dict()["features.conv0.weight"])
    hybrid = build_network(NetworkConfig(name="hdenseunet", kwargs=TINY_HYBRID))
    with pytest.raises(MedsegConfigError, match="missing"):
        initialise_network(hybrid, InitConfig(path=str(tmp_path / "w.safetensors")))
    with pytest.raises(MedsegConfigError, match="no submodule 'net4d'"):
        initialise_network(hybrid, InitConfig(path=str(tmp_path / "w.safetensors"), target="net4d"))
    with pytest.raises(MedsegConfigError, match="starts with 'net3d.'"):
        initialise_network(net, InitConfig(path=str(tmp_path / "w.safetensors"), prefix="net3d."))
    with pytest.raises(MedsegConfigError, match="not found"):
        initialise_network(net, InitConfig(path=str(tmp_path / "nothing")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedsegConfigError, match="holds no weights"):
        initialise_network(net, InitConfig(path=str(tmp_path / "empty")))
    save_file({"x": torch.zeros(1)}, str(tmp_path / "x.pt"))
    with pytest.raises(MedsegConfigError, match="not a .safetensors file"):
        initialise_network(net, InitConfig(path=str(tmp_path / "x.pt")))


def test_shorthand_in_the_config() -> None:
    assert NetworkConfig(name="unet", init_from="runs/a").init_from == InitConfig(path="runs/a")


def test_torchvision_densenet_converter_fills_the_encoder(tmp_path: Path) -> None:
    """ImageNet DenseNet weights in torchvision's layout (classifier included) into the 2D DenseUNet's encoder."""
    net = build_network(NetworkConfig(name="dense_unet_2d", kwargs=TINY_2D))
    torchvision_like = {}
    for key, value in net.encoder.state_dict().items():
        key = key.replace(".layers.", ".")  # torchvision has no .layers level inside dense layers
        torchvision_like[key] = torch.randn_like(value.float()).to(value.dtype) if value.is_floating_point() else value
    torchvision_like["classifier.weight"] = torch.zeros(10, 4)
    save_file(torchvision_like, str(tmp_path / "densenet.safetensors"))
    report = initialise_network(net, InitConfig(path=str(tmp_path / "densenet.safetensors"), convert="torchvision_densenet", target="encoder"))
    assert report["skipped"] == 0
    torch.testing.assert_close(net.encoder.state_dict()["features.conv0.weight"], torchvision_like["features.conv0.weight"])
    with pytest.raises(MedsegConfigError, match="unknown converter"):
        initialise_network(net, InitConfig(path=str(tmp_path / "densenet.safetensors"), convert="keras"))
