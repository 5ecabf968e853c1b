"""Case 8: ``medseg predict`` file to file against MONAI's tutorial inference pipeline, phase by phase.

MONAI side (the pattern of MONAI's tutorials): ``LoadImaged`` + ``EnsureChannelFirstd`` (read),
``Orientationd`` + ``Spacingd`` + ``ScaleIntensityRanged`` (preprocess), ``sliding_window_inference``
(network), ``Invertd`` + ``AsDiscreted(argmax)`` (restore), ``NibabelWriter`` uint8 (write). medseg side:
the predictor's ``load``, ``predict_image`` (its own phase timings) and ``write_image``. Same network
weights, same preprocessing parameters, same window settings.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from torch import nn

from medseg.config import NetworkConfig, PreprocessConfig
from medseg.model.package import ModelManifest, load_model_package, save_model_package
from medseg.inference.predictor import Predictor
from medseg.io.image_io import write_image

CT_WINDOW = (-200.0, 250.0)


def make_case(root: Path, cfg: dict[str, Any], net: nn.Module, classes: int) -> tuple[Path, Path]:
    """A CT-like int16 volume (``cfg["e2e_size"]`` at 0.8x0.8x2 mm, LPS storage) and a package of ``net``."""
    from scipy import ndimage

    size = tuple(cfg["e2e_size"])
    rng = np.random.default_rng(0)
    coarse = rng.normal(0, 1, tuple(max(2, s // 8) for s in size))
    smooth = ndimage.zoom(coarse, [s / c for s, c in zip(size, coarse.shape)], order=1)[: size[0], : size[1], : size[2]]
    hu = np.clip(40 + 300 * smooth + rng.normal(0, 12, size), -1024, 3000).astype(np.int16)
    affine = np.diag([-0.8, -0.8, 2.0, 1.0])
    src = root / "case.nii.gz"
    nib.save(nib.Nifti1Image(hu, affine), str(src))
    manifest = ModelManifest(
        name="bench", network=NetworkConfig(name="unet", kwargs=cfg["unet_kwargs"]), labels={i: f"c{i}" for i in range(classes)},
        modalities=["CT"], preprocess=PreprocessConfig(intensity="ct", ct_window=CT_WINDOW, target_spacing=tuple(cfg["e2e_spacing"])),
        patch_size=tuple(cfg["roi"]),
    )
    manifest.inference.sw_batch_size = cfg["sw_batch_size"]
    package = save_model_package(root / "model", net, manifest, force=True)
    return src, package


_PREDICTORS: dict[tuple[str, str, str], Predictor] = {}


def predictor_for(package: Path, device: torch.device, backend: str = "torch") -> Predictor:
    """One predictor per package, device and backend for the whole run (exports and compiles once)."""
    key = (str(package), str(device), backend)
    if key not in _PREDICTORS:
        _PREDICTORS[key] = Predictor(load_model_package(package, device), device, backend=backend)
    return _PREDICTORS[key]


def medseg_file_to_file(src: Path, out: Path, package: Path, device: torch.device, cfg: dict[str, Any], backend: str = "torch") -> dict[str, float]:
    predictor = predictor_for(package, device, backend)
    t0 = time.perf_counter()
    image, geometry = predictor.load([src])
    t1 = time.perf_counter()
    result = predictor.predict_image(image, geometry)
    t2 = time.perf_counter()
    write_image(out, result.labels, geometry, "label")
    t3 = time.perf_counter()
    return {"read": t1 - t0, **result.timings, "write": t3 - t2, "total": t3 - t0}


def monai_file_to_file(src: Path, out: Path, package: Path, device: torch.device, cfg: dict[str, Any]) -> dict[str, float]:
    from monai.data import NibabelWriter
    from monai.inferers import sliding_window_inference
    from monai.transforms import AsDiscreted, Compose, EnsureChannelFirstd, Invertd, LoadImaged, Orientationd, ScaleIntensityRanged, Spacingd

    net = predictor_for(package, device).network  # the very same module
    load = Compose([LoadImaged("image"), EnsureChannelFirstd("image")])
    pre = Compose(
        [
            Orientationd("image", axcodes="RAS"),
            Spacingd("image", pixdim=tuple(cfg["e2e_spacing"]), mode="bilinear", padding_mode="border", dtype=np.float32),
            ScaleIntensityRanged("image", a_min=CT_WINDOW[0], a_max=CT_WINDOW[1], b_min=0.0, b_max=1.0, clip=True),
        ]
    )
    post = Compose([Invertd("pred", transform=pre, orig_keys="image", nearest_interp=False), AsDiscreted("pred", argmax=True)])
    amp = device.type == "cuda"

    def predictor(batch: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, enabled=amp):
            return net(batch)

    t0 = time.perf_counter()
    d = load({"image": str(src)})
    t1 = time.perf_counter()
    d = pre(d)
    t2 = time.perf_counter()
    with torch.inference_mode():
        logits = sliding_window_inference(d["image"][None].to(device), tuple(cfg["roi"]), cfg["sw_batch_size"], predictor, overlap=0.5, mode="gaussian")
    d["pred"] = logits[0].float().cpu()
    t3 = time.perf_counter()
    d = post(d)
    t4 = time.perf_counter()
    writer = NibabelWriter(output_dtype=np.uint8)
    writer.set_data_array(d["pred"].to(torch.uint8), channel_dim=0)
    writer.set_metadata(d["pred"].meta, resample=False)
    writer.write(str(out), verbose=False)
    t5 = time.perf_counter()
    return {"read": t1 - t0, "preprocess": t2 - t1, "network": t3 - t2, "restore": t4 - t3, "write": t5 - t4, "total": t5 - t0}
