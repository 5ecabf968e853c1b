"""Pydantic schemas for pipeline YAML: code never reads an unvalidated dict.

An unknown key or a wrong type is a one-line :class:`MedsegConfigError` naming the key, e.g.
``demo.yaml: train.epoch: unknown key (did you mean 'epochs'?)``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from medseg.errors import MedsegConfigError


class Strict(BaseModel):
    """Base: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


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
    rotate90: float = Field(0.0, ge=0, le=1)
    scale_intensity: float = Field(0.15, ge=0, le=1)
    shift_intensity: float = Field(0.15, ge=0, le=1)
    gaussian_noise: float = Field(0.1, ge=0, le=1)


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
    augment: AugmentConfig = Field(default_factory=AugmentConfig)

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


class RampUpConfig(Strict):
    """Ramp-up of the unsupervised weight over training iterations: ``w(t) = weight * f(r)`` with
    ``r = min(floor(t / step) * step / iterations, 1)``; ``f``: ``sigmoid`` ``exp(-5 (1 - r)^2)`` (Laine &
    Aila; DSAIF code: step 150, 40 steps = 6000 iterations), ``linear`` ``r``, ``cosine``
    ``(1 - cos(pi r)) / 2``, ``constant`` 1."""

    shape: Literal["sigmoid", "linear", "cosine", "constant"] = "sigmoid"
    iterations: int = Field(6000, ge=0)
    step: int = Field(150, ge=1)


class ViewsConfig(Strict):
    """How the two networks' inputs are drawn from one crop (DSAIF code defaults).

    With probability ``prob`` the crop gets perturbed views (else both networks see it as is): each view
    its own gamma contrast (``gamma_prob``, uniform in ``gamma_range``), then the perturbation; with
    ``rotate`` the second network's view is turned by k x 90 degrees (k uniform in 0..3) in ``rotate_axes``
    (default: the last two spatial axes that are not the slice axis) and its output turned back.
    ``labelled_too``: labelled crops get views as well (code), else only unlabelled ones.
    """

    prob: float = Field(0.5, ge=0, le=1)
    gamma_prob: float = Field(0.5, ge=0, le=1)
    gamma_range: tuple[float, float] = (0.5, 1.5)
    rotate: bool = True
    rotate_axes: tuple[int, int] | None = None
    labelled_too: bool = True

    @field_validator("gamma_range")
    @classmethod
    def _gamma(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= v[1]:
            raise ValueError("needs 0 < low <= high")
        return v


class DsaifViewsConfig(Strict):
    """Max-tree / Min-tree views (``perturbation: dsaif``); filter settings as ``medseg.transforms.tree_filter``.

    ``scope: patch`` (paper) filters each crop after cropping (gamma before quantisation, crop scaled by
    the whole volume's range); ``scope: volume`` filters each whole preprocessed volume once per tree
    (cached; ``cache_dir`` keeps the results on disk for later runs), crops the filtered volumes at the
    same place and applies the gamma afterwards (faster; areas are those of whole-volume components).
    ``swap_prob``: probability that network 1 gets the Min-tree view and network 2 the Max-tree view.
    """

    scope: Literal["patch", "volume"] = "patch"
    swap_prob: float = Field(0.5, ge=0, le=1)
    min_area: int = Field(50, ge=0)
    levels: int | None = Field(256, ge=2)
    rounding: Literal["floor", "nearest"] = "floor"
    connectivity: int | None = Field(None, ge=1, le=3)
    cache_dir: str | None = None


class NoiseViewsConfig(Strict):
    """Gaussian noise views (``perturbation: noise``): std and clip as fractions of the volume's range."""

    std: float = Field(0.1, ge=0)
    clip: float = Field(0.2, gt=0)


class SemiSupervisedConfig(Strict):
    """Semi-supervised mutual training (``task: semi_supervised``, :mod:`medseg.engine.semisup`).

    Two networks (``network`` and ``second_network``, default the same architecture) learn from labelled
    crops (the pipeline's ``loss``) and from each other's hard pseudo-labels on differently perturbed
    views of unlabelled crops (cross pseudo supervision, weighted by ``unsupervised_weight`` x ramp-up).

    ``labelled``: keep the labels of only this fraction (0 < x < 1) or count (>= 1) of the training cases
    (seeded choice; validation cases are labelled ones set aside first), or of the cases named in a list
    (e.g. a paper's partition); the others are used unlabelled and their labels never read. ``perturbation``: ``dsaif`` (Max-/Min-tree views), ``noise``, ``plain``
    (same view, except the rotation), or ``none`` (labelled-only training of both networks, no unlabelled
    data). ``export``: the model package holds the ``better`` network (best validation Dice of each) or
    the ``ensemble`` (their mean softmax, registered network ``ensemble``).
    """

    second_network: NetworkConfig | None = None
    labelled: int | float | list[str] | None = None
    perturbation: Literal["dsaif", "noise", "plain", "none"] = "dsaif"
    views: ViewsConfig = Field(default_factory=ViewsConfig)
    dsaif: DsaifViewsConfig = Field(default_factory=DsaifViewsConfig)
    noise: NoiseViewsConfig = Field(default_factory=NoiseViewsConfig)
    unsupervised_weight: float = Field(1.0, ge=0)
    rampup: RampUpConfig = Field(default_factory=RampUpConfig)
    poly_per_iteration: bool = True
    export: Literal["better", "ensemble"] = "better"

    @field_validator("labelled")
    @classmethod
    def _labelled(cls, v: int | float | list[str] | None) -> int | float | list[str] | None:
        if isinstance(v, list):
            if not v:
                raise ValueError("give at least one case name")
        elif v is not None and (v <= 0 or (isinstance(v, float) and v >= 1)):
            raise ValueError("give a fraction between 0 and 1, a count >= 1 or a list of case names")
        return v


class PipelineConfig(Strict):
    """A whole pipeline YAML."""

    name: str
    description: str = ""
    task: str = "segmentation"
    seed: int = 0
    deterministic: bool = False
    data: DataConfig
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    network: NetworkConfig
    output: dict[str, Any] = Field(default_factory=lambda: {"kind": "labels"})
    loss: LossConfig = Field(default_factory=LossConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    roi: RoiConfig | None = None
    semi_supervised: SemiSupervisedConfig | None = None

    #: folder of the YAML file, for relative dataset paths (not part of the YAML)
    base_dir: Path | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _semi_supervised_keys(self) -> PipelineConfig:
        if self.task != "semi_supervised" and (self.semi_supervised is not None or self.data.unlabelled is not None):
            raise ValueError("semi_supervised and data.unlabelled need task: semi_supervised")
        if self.task == "semi_supervised" and (self.roi is not None or self.network.slice_context):
            raise ValueError("task: semi_supervised does not support roi or network.slice_context yet")
        return self

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() or self.base_dir is None else (self.base_dir / p)

    def sha256(self) -> str:
        """Hash of the validated configuration (recorded in model packages)."""
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def _known_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    current: Any = model
    for part in loc[:-1]:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        current = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}))


def format_validation_error(exc: ValidationError, model: type[BaseModel], source: str, prefix: str = "") -> str:
    """First problem of a pydantic error as one line naming the key (``prefix.key`` for a nested section)."""
    err = exc.errors()[0]
    loc = tuple(err.get("loc", ()))
    key = ".".join(str(p) for p in (prefix, *loc) if p != "") or "(top level)"
    if err.get("type") == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _known_keys(model, loc), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        msg = f"unknown key{hint}"
    else:
        msg = err.get("msg", "invalid value")
    more = len(exc.errors()) - 1
    return f"{source}: {key}: {msg}" + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def load_pipeline(path: str | Path, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Read and validate a pipeline YAML.

    Raises:
        MedsegConfigError: missing file, YAML syntax error, unknown key or wrong type (one line).
    """
    path = Path(path)
    raw = read_yaml_mapping(path)
    if "stages" in raw:
        raise MedsegConfigError(f"{path}: is a staged pipeline ('stages:'): train it with `medseg train` (see medseg.engine.stages)")
    return validate_pipeline(apply_overrides(raw, overrides or {}), source=str(path), base_dir=path.parent)


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set ``{"section.key": value}`` overrides in a raw pipeline mapping (in place, missing sections created);
    returns ``raw``. Example: ``apply_overrides(raw, {"train.epochs": 2})``."""
    for dotted, value in overrides.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return raw


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """The top-level mapping of a pipeline YAML file (one-line :class:`MedsegConfigError` otherwise)."""
    if not path.is_file():
        raise MedsegConfigError(f"{path}: pipeline file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise MedsegConfigError(f"{path}: not valid YAML{where}") from exc
    if not isinstance(raw, dict):
        raise MedsegConfigError(f"{path}: expected a mapping of keys at the top level")
    return raw


def validate_pipeline(raw: dict[str, Any], source: str = "config", base_dir: Path | None = None) -> PipelineConfig:
    try:
        config = PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise MedsegConfigError(format_validation_error(exc, PipelineConfig, source)) from exc
    config.base_dir = base_dir
    return config


def bundled_pipeline(name: str) -> Path:
    """Path of a pipeline YAML shipped with medseg (source checkout's ``pipelines/`` or the wheel's copy)."""
    here = Path(__file__).resolve().parent
    for folder in (here.parent / "pipelines", here / "pipelines"):
        candidate = folder / f"{name}.yaml"
        if candidate.is_file():
            return candidate
    raise MedsegConfigError(f"no bundled pipeline named '{name}'")
