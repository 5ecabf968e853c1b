"""The sections every pipeline shares: data, preprocessing, network, output head, loss, training, inference, ROI."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SerializeAsAny, ValidationError, field_validator, model_validator

from medseg.config.base import Strict, format_validation_error
from medseg.errors import MedsegConfigError
from medseg.registry import Registry


class PreprocessConfig(Strict):
    """Preprocessing preset shared by training, validation and prediction (stored in the model package).

    ``intensity``: ``ct`` clips to ``ct_window`` then computes ``(x - ct_offset) / ct_scale`` (defaults: the
    window's lower bound and width, giving [0, 1]); ``mri`` z-scores each channel over its non-zero voxels;
    ``minmax`` clips each channel to its ``minmax_percentiles`` and rescales it to [0, 1] (MICDIR's
    preprocessing: 0.01 % and 99.99 %); ``none`` leaves intensities alone. Multi-modal inputs stack one channel per modality, then apply the
    intensity preset per channel.
    """

    intensity: Literal["ct", "mri", "none", "minmax"] = "ct"
    ct_window: tuple[float, float] = (-1000.0, 1000.0)
    ct_offset: float | None = None
    ct_scale: float | None = None
    target_spacing: tuple[float, float, float] | None = None
    orientation: str = "RAS"
    minmax_percentiles: tuple[float, float] = (0.01, 99.99)

    @field_validator("ct_window")
    @classmethod
    def _window_ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[1] <= v[0]:
            raise ValueError("upper bound must exceed lower bound")
        return v

    @field_validator("minmax_percentiles")
    @classmethod
    def _percentiles(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= v[0] < v[1] <= 100:
            raise ValueError("needs 0 <= lower < upper <= 100")
        return v

    @field_validator("orientation")
    @classmethod
    def _axcodes(cls, v: str) -> str:
        v = v.upper()
        axis_of = {"L": 0, "R": 0, "A": 1, "P": 1, "S": 2, "I": 2}
        if len(v) != 3 or any(c not in axis_of for c in v) or sorted(axis_of[c] for c in v) != [0, 1, 2]:
            raise ValueError(f"'{v}' is not a 3-letter orientation code such as RAS or LPS")
        return v


class SyntheticDataConfig(Strict):
    """Generate a phantom dataset (a registered generator, see :mod:`medseg.data.registry`)."""

    kind: str = "ct_phantom"
    n_train: int = Field(12, ge=2)
    n_test: int = Field(1, ge=0)
    seed: int = 0
    options: dict[str, Any] = Field(default_factory=dict)


class DataConfig(Strict):
    """Where the cases come from and how they are split.

    ``dataset`` is a Decathlon ``dataset.json`` or a folder with ``imagesTr/`` + ``labelsTr/`` (relative
    paths are relative to the YAML file), or a release read by a registered ``layout`` (e.g. ``lits``);
    ``synthetic`` generates a phantom dataset into the run folder.
    """

    dataset: str | None = None
    layout: str = "auto"
    synthetic: SyntheticDataConfig | None = None
    labels: dict[int, str] = Field(default_factory=lambda: {0: "background", 1: "foreground"})
    modalities: list[str] = Field(default_factory=lambda: ["CT"])
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    val_cases: list[str] | None = None
    cache: bool = True
    #: semi-supervised mode only: a folder of images or a dataset.json whose cases are all used unlabelled
    #: (labels there are ignored and never read); cases of ``dataset`` without a label are unlabelled too
    unlabelled: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if (self.dataset is None) == (self.synthetic is None):
            raise ValueError("give exactly one of 'dataset' or 'synthetic'")
        if 0 not in self.labels:
            raise ValueError("labels must include 0 (background)")
        return self


class InitConfig(Strict):
    """``network.init_from``: start training from earlier weights (e.g. stage 2 of a method from stage 1).

    ``path``: a model package folder, a run folder (its ``model/`` package, else ``checkpoints/best`` or
    ``last``) or a ``.safetensors`` file, relative to the YAML's folder; in a staged pipeline ``stage:NAME``
    is that stage's model package. ``prefix``: use only the source keys starting with it, prefix removed
    (``net2d.`` takes a hybrid's 2D part). ``target``: dotted submodule of this network that receives the
    weights (``net2d`` puts a 2D network into a hybrid); empty = the whole network. ``strict``: every target
    key filled, every source key used, shapes equal (else only the matching keys are loaded, and reported).
    ``convert``: a key converter applied before ``prefix``. A plain string is shorthand for ``{path: ...}``.
    """

    path: str
    prefix: str = ""
    target: str = ""
    strict: bool = True
    #: rename the source's keys first with a registered converter, e.g. ``torchvision_densenet`` (ImageNet
    #: DenseNet-161 weights into a DenseUNet ``encoder``); see :mod:`medseg.engine.init_weights`
    convert: str | None = None


class NetworkConfig(Strict):
    """A registry network and its constructor arguments; ``slice_axis`` runs a 2D network slice by slice.

    ``slice_context`` (2.5D, with ``slice_axis``): each slice is fed with its ``slice_context`` neighbours on
    each side as extra channels (``in_channels = modalities * (2 * slice_context + 1)``), volume-end slices
    replicated; see :mod:`medseg.transforms.slice_context`. ``init_from``: see :class:`InitConfig`.
    """

    name: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    slice_axis: int | None = Field(None, ge=0, le=2)
    slice_context: int = Field(0, ge=0)
    init_from: InitConfig | None = None

    @field_validator("init_from", mode="before")
    @classmethod
    def _init_shorthand(cls, v: Any) -> Any:
        return {"path": v} if isinstance(v, str) else v

    def input_channels(self, modalities: int) -> int:
        """Channels the network receives for ``modalities`` image channels (2.5D stacks multiply them)."""
        return modalities * (2 * self.slice_context + 1)

    @model_validator(mode="after")
    def _context_needs_axis(self) -> NetworkConfig:
        if self.slice_context and self.slice_axis is None:
            raise ValueError("slice_context needs slice_axis (it feeds a 2D network neighbouring slices)")
        return self


class RoiConfig(Strict):
    """Cascade: a localiser model finds the region of interest; the network sees only that box plus a margin.

    ``localiser``: the localiser's model package (relative to the YAML, or ``stage:NAME`` in a staged
    pipeline; inside an exported package, its subfolder ``localiser``). ``labels``: localiser labels that make
    the region; ``largest_component``: keep only the largest connected part of that mask; ``margin_mm``: added
    on each side of its bounding box. Training and validation crop every case to the same box taken from its
    reference label (the H-DenseUNet code's liver box); prediction pastes the result back into the full volume.
    """

    localiser: str
    labels: list[int] = Field(default_factory=lambda: [1])
    margin_mm: tuple[float, float, float] = (10.0, 10.0, 10.0)
    largest_component: bool = True

    @field_validator("margin_mm", mode="before")
    @classmethod
    def _scalar_margin(cls, v: Any) -> Any:
        return (v, v, v) if isinstance(v, (int, float)) else v

    @field_validator("margin_mm")
    @classmethod
    def _non_negative(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(v) < 0:
            raise ValueError("margins must be >= 0")
        return v


class LossConfig(Strict):
    name: str = "dice_ce"
    kwargs: dict[str, Any] = Field(default_factory=dict)


class AugmentConfig(Strict):
    """Probabilities of MONAI's random augmentations (0 switches one off)."""

    flip: float = Field(0.5, ge=0, le=1)
    #: axes (0, 1, 2 of the network grid, 2 = axial z) a patch may be flipped along; ``None``: every axis but a
    #: 2D network's slice axis. H-DenseUNet's code flips in-plane only: ``[0, 1]``
    flip_axes: list[int] | None = None
    rotate90: float = Field(0.0, ge=0, le=1)
    scale_intensity: float = Field(0.15, ge=0, le=1)
    shift_intensity: float = Field(0.15, ge=0, le=1)
    gaussian_noise: float = Field(0.1, ge=0, le=1)

    @field_validator("flip_axes")
    @classmethod
    def _flip_axes(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and not set(v) <= {0, 1, 2}:
            raise ValueError("axes must be 0, 1 or 2")
        return v


#: torch's CPU thread count of a ``deterministic: true`` run without ``train.threads`` (the same on every machine)
DETERMINISTIC_THREADS = 2


class TrainConfig(Strict):
    epochs: int = Field(100, ge=1)
    iterations_per_epoch: int | None = Field(None, ge=1)
    batch_size: int = Field(2, ge=1)
    patch_size: tuple[int, ...] = (96, 96, 96)
    samples_per_volume: int = Field(2, ge=1)
    pos_fraction: float = Field(0.67, ge=0, le=1)
    #: sample patch centres by class instead (one ratio per class index, MONAI ``RandCropByLabelClassesd``),
    #: e.g. ``[0, 1, 1]``: centred on a liver or a tumour voxel, 50/50 (H-DenseUNet's code)
    class_ratios: list[float] | None = None
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(1e-2, gt=0)
    momentum: float = 0.99
    nesterov: bool = True
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 3e-5
    lr_schedule: Literal["poly", "constant"] = "poly"
    poly_power: float = 0.9
    grad_clip: float | None = 12.0
    amp: bool = True
    compile: bool = False
    val_every: int = Field(1, ge=1)
    num_workers: int = Field(0, ge=0)
    #: CPU threads of torch while training (``torch.set_num_threads``). A float sum's order, and so the
    #: trained weights, depend on it: unset, a ``deterministic`` run uses :data:`DETERMINISTIC_THREADS`,
    #: other runs torch's default (the core count)
    threads: int | None = Field(None, ge=1)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    #: submodules of the network (dotted names, e.g. ``[net2d]``) frozen during this stage: no gradients, not
    #: in the optimizer, kept in eval mode (batch-norm statistics and dropout off)
    freeze: list[str] = Field(default_factory=list)
    #: skip a training batch whose label lacks any class of ``data.labels`` and draw another (H-DenseUNet's
    #: ``train_hybrid.py``); only accepted batches count as steps
    skip_incomplete_batches: bool = False

    @field_validator("patch_size")
    @classmethod
    def _patch(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if len(v) != 3 or min(v) < 1:
            raise ValueError("patch_size needs three positive sizes (use 1 along the slice axis of 2D networks)")
        return v


class InferenceConfig(Strict):
    overlap: float = Field(0.5, ge=0, lt=1)
    sw_batch_size: int = Field(2, ge=1)
    tta: bool = False
    #: how windows are placed and averaged. ``gaussian``: MONAI's sliding window, Gaussian weights, logits
    #: averaged. ``chunks``: H-DenseUNet's test script: windows as deep as the training patch along the last axis
    #: (z), ``chunk_stride`` apart, each chunk's ``chunk_edge`` end slices unscored, softmax averaged with equal
    #: weight (``overlap`` then sets the in-plane windows only). ``auto``: the network's own scheme (``chunks``
    #: for ``hdenseunet``, ``gaussian`` for every other network)
    window: Literal["auto", "gaussian", "chunks"] = "auto"
    #: z step of ``chunks`` (``None``: the window depth // 4, the code's 2 for 8-slice chunks)
    chunk_stride: int | None = Field(None, ge=1)
    #: slices at each end of a chunk that ``chunks`` does not score (the code's 1)
    chunk_edge: int = Field(1, ge=0)


class OutputOptions(Strict):
    """The ``output`` section: which head decodes the network (``kind``) and its options.

    Each head of :mod:`medseg.model.heads` subclasses this with its own typed options and registers it in
    :data:`OUTPUT_KINDS`; a section is validated by the model of its ``kind`` (a union discriminated by
    ``kind``, open to new heads), with one-line errors such as ``output.threshold: Input should be less than 1``.
    """

    kind: str = "labels"


#: head option models by ``output.kind``; the head modules register theirs (imported when first asked)
OUTPUT_KINDS: Registry[type[OutputOptions]] = Registry("output kind", packages=["medseg.model.heads"], option="output.kind")


def parse_output(raw: Any) -> OutputOptions:
    """Validate an ``output`` section (a mapping, or options already validated) by its kind's model.

    Raises:
        MedsegConfigError: unknown kind (did-you-mean) or a bad option, one line naming ``output.<key>``.
    """
    if isinstance(raw, OutputOptions) and type(raw) is not OutputOptions:
        return raw
    data = raw.model_dump() if isinstance(raw, OutputOptions) else dict(raw or {})
    data.setdefault("kind", "labels")
    model = OUTPUT_KINDS.get(str(data["kind"]))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise MedsegConfigError(format_validation_error(exc, model, "", prefix="output").removeprefix(": ")) from None


#: a typed ``output`` field: validated by its kind's options model, serialised with all of that model's fields
OutputSection = Annotated[SerializeAsAny[OutputOptions], BeforeValidator(parse_output)]


__all__ = [
    "OUTPUT_KINDS",
    "AugmentConfig",
    "DataConfig",
    "InferenceConfig",
    "InitConfig",
    "LossConfig",
    "NetworkConfig",
    "OutputOptions",
    "OutputSection",
    "PreprocessConfig",
    "RoiConfig",
    "SyntheticDataConfig",
    "TrainConfig",
    "parse_output",
]
