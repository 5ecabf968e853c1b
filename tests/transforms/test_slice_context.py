"""2.5D slice context: neighbours as channels, same stacking as the hybrid network's, in datasets and SliceWise."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from monai.data import MetaTensor

from medseg.config import NetworkConfig, load_pipeline
from monai.transforms import Compose

from medseg.engine.data import labelled_case_transforms, pipeline_cases
from medseg.networks import create_network, get_network_spec
from medseg.networks.blocks.slicewise import SliceWise
from medseg.networks.hdenseunet import stack_slices, unstack_slices
from medseg.transforms.slice_context import SliceContextd, slice_context_transforms, stack_neighbours
from tests.conftest import write_pipeline


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_stack_neighbours_matches_shifted_volumes(axis: int) -> None:
    x = torch.randn(2, 5, 6, 7)
    out = stack_neighbours(x, axis, 2)
    assert out.shape == (10, 5, 6, 7)
    n = x.shape[1 + axis]
    for c in range(2):
        for o in range(5):
            index = (torch.arange(n) + o - 2).clamp(0, n - 1)
            torch.testing.assert_close(out[c * 5 + o], x[c].index_select(axis, index))


def test_slicewise_2d_on_stacked_volume_equals_the_hybrids_2d_branch() -> None:
    """A 2D DenseUNet trained on these stacks is the hybrid's ``net2d``: same inputs, same outputs."""
    torch.manual_seed(0)
    kwargs = get_network_spec("dense_unet_2d").tiny_kwargs(2)
    net = create_network("dense_unet_2d", **kwargs).eval()
    volume = torch.randn(1, 1, 32, 32, 5)
    via_transform = SliceWise(net, slice_axis=2)(stack_neighbours(volume[0], 2, 1)[None])
    via_hybrid = unstack_slices(net(stack_slices(volume, 1)), 1)
    torch.testing.assert_close(via_transform, via_hybrid)


def test_dict_transform_keeps_metadata_and_config_switch() -> None:
    image = MetaTensor(torch.randn(1, 4, 4, 3), affine=torch.diag(torch.tensor([2.0, 2.0, 5.0, 1.0])))
    out = SliceContextd(["image"], axis=2, context=1)({"image": image, "label": torch.zeros(1, 4, 4, 3)})
    assert out["image"].shape == (3, 4, 4, 3) and out["label"].shape == (1, 4, 4, 3)
    torch.testing.assert_close(out["image"].affine, image.affine)
    assert slice_context_transforms(NetworkConfig(name="x", slice_axis=2)) == []
    assert len(slice_context_transforms(NetworkConfig(name="x", slice_axis=2, slice_context=1))) == 1
    with pytest.raises(ValueError, match="slice_axis"):
        NetworkConfig(name="x", slice_context=1)


def test_pipeline_datasets_carry_the_context(tmp_path: Path) -> None:
    """Preprocessed training volumes get 2k+1 channels whose centre is the plain preprocessed image."""
    plain = load_pipeline(write_pipeline(tmp_path / "a.yaml", **{"data.synthetic.n_train": 2, "data.cache": False}))
    stacked = plain.model_copy(update={"network": NetworkConfig(name="dense_unet_2d", slice_axis=2, slice_context=1)})
    cases = pipeline_cases(plain, tmp_path / "run")[:1]
    a = Compose(labelled_case_transforms(plain))(dict(cases[0]))["image"]
    b = Compose(labelled_case_transforms(stacked))(dict(cases[0]))["image"]
    assert b.shape == (3, *a.shape[1:])
    torch.testing.assert_close(b[1], a[0])
    torch.testing.assert_close(b[0][..., 1:], a[0][..., :-1])  # channel 0 = the slice below
    torch.testing.assert_close(b[2][..., :-1], a[0][..., 1:])  # channel 2 = the slice above
