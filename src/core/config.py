"""One frozen run configuration: loaded from a YAML recipe in `configs/`, overridden on the command line.

    cfg = load_config("configs/demo_cpu.yaml", {"epochs": 2})

Every field is also a command-line flag (`epochs` -> `--epochs`, `data_dir` -> `--data-dir`), so a recipe
never has to be edited to change one value. The resolved config is saved into the run folder and into
every checkpoint, which is what makes a run folder self-describing. docs/configuration.md lists every field with
the function where it takes effect.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from src.core.cadence import (
    ALL_OBSERVATIONS,
    DF_HZ,
    DT_S,
    OBSERVATION_SHAPE,
    loaded_observations,
    observation_shape_problem,
)
from src.core.errors import ConfigError
from src.core.files import write_text_atomically

VIEWS = ("on", "all", "channels", "dedoppler")
NORMALIZATIONS = ("sample", "observation", "robust", "none")
POOLS = ("avg", "gem")
MIX_MODES = ("none", "mixup", "cutmix", "both")
MIX_LABELS = ("mix", "max", "or")
PRECISIONS = ("no", "fp16", "bf16")
TTA_VIEWS = ("identity", "hflip", "vflip", "hvflip")
TRACKERS = ("wandb", "tensorboard")
NONFINITE_LOSS_ACTIONS = ("stop", "skip")
BACKGROUNDS = ("none", "off_spectrum")
WINDOWS = ("fixed", "follows_drift")
SELECTIONS = ("valid_auc", "valid_loss")
OPTIMIZERS = ("adamw", "sam")


@dataclass(frozen=True)
class Config:
    # --- data ---
    data_dir: str = "input"
    out_dir: str = "outputs"
    run_name: str | None = None  # default: <recipe>-<UTC timestamp>
    view: str = "on"  # on: 3 ON obs stacked (819x256); all: 6 stacked (1638x256); channels: 6 obs as channels;
    # dedoppler: channels plus each observation's de-Doppler plane aligned across the cadence (12 channels)
    image_size: tuple[int, int] | None = None  # (height, width) after resizing; None keeps the native size
    normalize: str = "sample"  # sample: one mean/std per sample; observation: per observation; robust: per
    # observation by median and MAD, bright pixels compressed (src/transforms/images.py); none
    background: str = "none"  # off_spectrum: subtract the OFF observations' mean spectrum from all (reads all six)
    observation_shape: tuple[int, int] = OBSERVATION_SHAPE  # time rows, frequency channels of one observation
    resolution: tuple[float, float] = (DF_HZ, DT_S)  # channel width (Hz), time row (s) of the data
    window: str = "fixed"  # fixed: the same channels in all six observations (Kaggle); follows_drift: each
    # observation's window centred where the candidate is at that observation (snippets cut around scan candidates)
    n_folds: int = 5
    folds: tuple[int, ...] | None = None  # which folds to train; None trains all of them
    seed: int = 42
    cache_dir: str | None = None  # packed cache root (python -m src.pack); the file tree is read when it has no match
    num_workers: int | None = None  # loader worker processes; None: from the CPUs available (see README)
    prefetch_factor: int = 2  # batches each loader worker reads ahead
    # --- model ---
    model_name: str = "swin_tiny_patch4_window7_224"
    pretrained: str | None = None  # local weights file or folder; never downloaded
    pool: str = "avg"
    first_conv_stride: tuple[int, int] | None = None  # e.g. (1, 2) keeps time resolution in the stem
    track_evidence: bool = False  # scan snippets: the sums of straight tracks through the window's centre, per
    # observation, join the pooled features before the head (src/models/track_evidence.py)
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    ema_decay: float = (
        0.0  # >0: validate and save an exponential moving average of the weights (timm ModelEmaV3, warm-up)
    )
    channels_last: bool = False  # NHWC weights and inputs: faster convolutions under AMP on tensor-core GPUs
    compile: bool = False  # torch.compile the model (inductor, through Accelerate): slower start, faster steps
    grad_checkpointing: bool = False  # timm's activation checkpointing: recompute in backward, far less GPU memory
    # --- optimisation ---
    epochs: int = 10
    batch_size: int = 32
    eval_batch_size: int = 64
    optimizer: str = "adamw"  # or sam: AdamW on the gradient at the loss's sharpest point within sam_rho
    sam_rho: float = 0.05  # SAM's neighbourhood radius (the L2 norm of the weight perturbation)
    lr: float = 1e-4
    min_lr: float = 1e-6
    weight_decay: float = 1e-2
    warmup_epochs: float = 1.0
    grad_clip: float = 1.0  # max gradient norm; 0 disables clipping
    grad_accum_steps: int = 1
    mixed_precision: str = "no"
    sampler_strength: float = 0.0  # 0: natural class mix; 1: class-balanced batches
    # --- augmentation ---
    hflip_p: float = 0.5
    vflip_p: float = 0.5
    mix: str = "none"
    mix_prob: float = 0.5
    mixup_alpha: float = 1.0
    cutmix_alpha: float = 1.0
    mix_label: str = "mix"  # mixup's label: mix (weighted), max, or (y1 + y2 - y1*y2); CutMix's is always area-weighted
    inject_prob: float = 0.0  # share of training samples given a fresh needle in their ON observations (label 1)
    inject_rfi_prob: float = (
        0.0  # share given fresh interference in all six observations (label kept); needs all six loaded
    )
    inject_snr: tuple[float, float] = (5.0, 60.0)  # setigen SNR range of injected needles and interference, log-uniform
    inject_partial_prob: float = 0.0  # share of injected needles present in only part of the cadence (some ON obs)
    inject_rfi_wide: bool = False  # injected interference drawn as widely as needles (wide, fading in some OFF obs)
    inject_rfi_snr: tuple[float, float] | None = None  # setigen SNR range of injected interference; None: inject_snr
    pseudo_labels: str | None = (
        None  # a submission CSV of data_dir's test split: its cadences join training, soft labels
    )
    select_by: str = "valid_auc"  # each fold keeps the epoch of best validation ROC AUC, or of lowest validation
    # loss: calibrated logits, on one scale across folds, as the pooled out-of-fold AUC and a fold ensemble need
    # --- evaluation and logging ---
    tta: tuple[str, ...] = TTA_VIEWS
    tracker: tuple[str, ...] = ("wandb",)
    project: str = "seti-breakthrough-listen"
    # --- reliability ---
    skip_bad: bool = False  # training leaves out unreadable cadences (listed in bad_files.csv) instead of stopping
    save_every_minutes: float = 10.0  # resume state saved at least this often and at every epoch end; 0: every update
    nonfinite_loss: str = "stop"  # a NaN/inf training loss stops the run, or (skip) that batch is left out

    def __post_init__(self) -> None:
        _check_finite(self)
        _check_choice("view", self.view, VIEWS)
        _check_choice("normalize", self.normalize, NORMALIZATIONS)
        _check_choice("background", self.background, BACKGROUNDS)
        _check_choice("window", self.window, WINDOWS)
        problem = observation_shape_problem(self.observation_shape)
        if problem:
            raise ConfigError(f"observation_shape: {problem}")
        if len(self.resolution) != 2 or min(self.resolution) <= 0:
            raise ConfigError(
                f"resolution: must be [channel width in Hz, time row in s], both > 0, got {list(self.resolution)}"
            )
        if self.view == "dedoppler" and self.window == "follows_drift":
            raise ConfigError(
                "window: follows_drift re-centres each observation's window on the candidate, so no straight path "
                "runs across the cadence for view dedoppler's aligned planes; use view channels, all or on"
            )
        _check_choice("pool", self.pool, POOLS)
        if self.track_evidence and (self.view, self.window, self.image_size) != ("channels", "follows_drift", None):
            raise ConfigError(
                "track_evidence: sums tracks through the centre of scan snippets, so it needs view channels, "
                "window follows_drift and image_size null"
            )
        _check_choice("mix", self.mix, MIX_MODES)
        _check_choice("mix_label", self.mix_label, MIX_LABELS)
        _check_choice("mixed_precision", self.mixed_precision, PRECISIONS)
        _check_choice("nonfinite_loss", self.nonfinite_loss, NONFINITE_LOSS_ACTIONS)
        _check_choice("select_by", self.select_by, SELECTIONS)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        for name in self.tta:
            _check_choice("tta", name, TTA_VIEWS)
        if not self.tta:
            raise ConfigError("tta: needs at least one view (e.g. identity)")
        for name in self.tracker:
            _check_choice("tracker", name, TRACKERS)
        for name in ("epochs", "batch_size", "eval_batch_size", "grad_accum_steps", "prefetch_factor"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.n_folds < 2:
            raise ConfigError(f"n_folds: must be >= 2, got {self.n_folds}")
        if self.folds is not None and any(not 0 <= f < self.n_folds for f in self.folds):
            raise ConfigError(f"folds: each must be in [0, {self.n_folds}), got {list(self.folds)}")
        for name in ("inject_snr", "inject_rfi_snr"):
            bounds = getattr(self, name)
            if bounds is not None and (len(bounds) != 2 or not 0 < bounds[0] <= bounds[1]):
                raise ConfigError(f"{name}: must be [low, high] with 0 < low <= high, got {list(bounds)}")
        for name in (
            "hflip_p",
            "vflip_p",
            "mix_prob",
            "sampler_strength",
            "inject_prob",
            "inject_rfi_prob",
            "inject_partial_prob",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name}: must be in [0, 1], got {getattr(self, name)}")
        if self.inject_rfi_prob > 0 and len(loaded_observations(self.view, self.background)) < len(ALL_OBSERVATIONS):
            raise ConfigError(
                "inject_rfi_prob: interference goes into all six observations, but view 'on' loads only the "
                "ON ones; use view all, channels or dedoppler (or background off_spectrum, which loads all six)"
            )
        for name in ("lr", "mixup_alpha", "cutmix_alpha", "sam_rho"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)}")
        for name in ("min_lr", "weight_decay", "warmup_epochs", "grad_clip", "num_workers", "save_every_minutes"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay: must be in [0, 1) (0 disables EMA), got {self.ema_decay}")
        if self.image_size is not None and (len(self.image_size) != 2 or min(self.image_size) < 8):
            raise ConfigError(f"image_size: must be [height, width] of at least 8 each, got {self.image_size}")
        if self.first_conv_stride is not None and (len(self.first_conv_stride) != 2 or min(self.first_conv_stride) < 1):
            raise ConfigError(f"first_conv_stride: must be [stride_h, stride_w] >= 1, got {self.first_conv_stride}")

    @property
    def cadence_shape(self) -> tuple[int, int, int]:
        """(6, rows, channels): one whole sample of the data."""
        return (len(ALL_OBSERVATIONS), *self.observation_shape)

    @property
    def train_folds(self) -> tuple[int, ...]:
        return self.folds if self.folds is not None else tuple(range(self.n_folds))

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-friendly values (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def _check_finite(cfg: Config) -> None:
    """No NaN or infinity in any number: NaN passes every `<` and `<=` check below (and a NaN grad_clip would
    turn clipping off silently), and no setting here means anything at infinity."""
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        values = value if isinstance(value, tuple | list) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise ConfigError(f"{field.name}: must be a finite number, got {value}")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}: {value!r} is not one of {', '.join(choices)}")


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(Config)


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Turn a YAML/CLI value into the field's declared type, or raise ConfigError saying why not."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(name, value, inner)
    if origin is tuple:
        if isinstance(value, str):
            value = [] if value.lower() == "none" else [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        item_type = args[0]
        if args[-1] is not Ellipsis and len(value) != len(args):
            raise ConfigError(f"{name}: expected {len(args)} values, got {list(value)}")
        return tuple(_coerce(name, v, item_type) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{name}: expected true/false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            return int(value)
        raise ConfigError(f"{name}: expected an integer, got {value!r}")
    if hint is float:
        if not isinstance(value, bool):
            try:
                return float(value)
            except (TypeError, ValueError):
                pass
        raise ConfigError(f"{name}: expected a number, got {value!r}")
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{name}: unsupported type {hint}")  # pragma: no cover - guards new field types


def make_config(values: dict[str, Any], source: str = "config") -> Config:
    """Build a Config from loose values, naming `source` in any error."""
    hints = _field_types()
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(hints)}")
    try:
        coerced = {k: _coerce(k, v, hints[k]) for k, v in values.items()}
        return Config(**coerced)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """The safe loader, refusing a key given twice in one mapping (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a recipe with the safe loader; an empty file is an empty recipe; a key given twice is refused."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        values = yaml.load(path.read_text(), Loader=_UniqueKeyLoader) or {}  # a SafeLoader: no Python objects
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(values).__name__}")
    return values


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> Config:
    """Recipe file (optional) + overrides -> validated Config."""
    values = read_yaml(path) if path else {}
    source = str(path) if path else "config"
    base = make_config(values, source)  # validate the recipe itself before applying overrides
    if not overrides:
        return base
    merged = {**values, **overrides}
    return make_config(merged, f"{source} with command-line overrides")


def save_config(cfg: Config, path: str | Path) -> None:
    write_text_atomically(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--config` and one `--<field>` flag for every Config field (all default to 'not given')."""
    parser.add_argument("--config", help="YAML recipe in configs/ (fields not in it take their defaults)")
    group = parser.add_argument_group("config overrides (any Config field; lists as a,b,c)")
    hints = _field_types()
    for f in dataclasses.fields(Config):
        default = f.default if f.default is not dataclasses.MISSING else None
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        switch = {"nargs": "?", "const": "true"} if hints[f.name] is bool else {}  # a bare --skip-bad means true
        group.add_argument(
            "--" + f.name.replace("_", "-"), dest=f.name, default=argparse.SUPPRESS, help=f"default: {shown}", **switch
        )


def config_from_args(args: argparse.Namespace) -> Config:
    names = {f.name for f in dataclasses.fields(Config)}
    overrides = {k: v for k, v in vars(args).items() if k in names}
    return load_config(getattr(args, "config", None), overrides)
