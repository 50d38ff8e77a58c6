"""One config describes a run: data, encoder, pooling, regions, objective,
optimisation and trainer. It is read from a YAML recipe, overridden with
dotted ``key=value`` pairs on the command line, and saved with the model.

Unknown keys, values of the wrong type, values outside a key's choices
(declared with ``Literal``) and numbers outside a key's range (declared with
``Annotated[..., Bounds(...)]``) are :class:`ConfigError` s that name the key
and what it allows, raised when the config is loaded. What needs the file
system (paths, splits, the corpus) is checked by :mod:`emosphere.check`
before a run writes anything.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml

from .errors import UserError
from .io import write_text_atomic

if TYPE_CHECKING:
    from .sphere import RegionSet

Pooling = Literal["style", "attentive", "mean"]
RegionSetName = Literal["octant", "sphere30", "sphere45", "sphere60", "sphere90"]
AuxSchedule = Literal["linear", "constant", "none"]
InferencePrecision = Literal["fp32", "bf16", "fp16"]
"""Prediction and evaluation: exact fp32 (no TF32), or bf16 / fp16 autocast."""
PRECISIONS: tuple[str, ...] = typing.get_args(InferencePrecision)
DEFAULT_CROP_SECONDS = 12.0
"""The training crop of the paper recipe (data.max_seconds), and so the default window in which a
model predicts: a model hears at inference what it heard in training."""
Precision = Literal["auto", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true"]
"""auto, or one of Lightning's precision strings."""
Accelerator = Literal["auto", "cpu", "gpu", "cuda", "mps", "tpu"]


@dataclass(frozen=True)
class Bounds:
    """The range a number must lie in, declared as ``Annotated[int, Bounds(low=1)]``."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return math.isfinite(value) and above and below

    def __str__(self) -> str:
        low, high = (str(int(x)) if float(x).is_integer() else f"{x:g}" for x in (self.low, self.high))
        if self.high == math.inf:
            return f"{'>' if self.low_open else '>='} {low}"
        return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"


@dataclass(frozen=True)
class Ordered:
    """Two finite numbers, the first below the second, declared as
    ``Annotated[list[float] | None, Ordered()]`` (a rating scale ``[low, high]``)."""

    def check(self, value: list | None, key: str) -> list[float] | None:
        numbers = value is None or all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        if value is not None and not (
            numbers and len(value) == 2 and all(map(math.isfinite, value)) and value[0] < value[1]
        ):
            raise ConfigError(f"{key}: must be two numbers [low, high] with low < high, got {value!r}")
        return None if value is None else [float(v) for v in value]


Count = Annotated[int, Bounds(low=0)]
AtLeastOne = Annotated[int, Bounds(low=1)]
Positive = Annotated[float, Bounds(low=0, low_open=True)]
NonNegative = Annotated[float, Bounds(low=0)]
Dropout = Annotated[float, Bounds(low=0, high=1, high_open=True)]
Seed = Annotated[int, Bounds(low=0, high=2**32 - 1)]
Attention = Literal["fused", "eager"]


@dataclass
class DataConfig:
    corpus: str = ""
    """Corpus folder in the MSP-Podcast layout (Audios/, Labels/labels_consensus.csv)."""
    labels: str | None = None
    """Label CSV; default <corpus>/Labels/labels_consensus.csv."""
    audio_dir: str | None = None
    """Audio folder; default <corpus>/Audios."""
    keep_other: bool = False
    """Keep EmoClass O (other) and X (no agreement) rows; the paper recipe drops them."""
    train_split: str = "Train"
    dev_split: str = "Development"
    max_seconds: Positive = DEFAULT_CROP_SECONDS
    """Training utterances are cut to their first max_seconds; prediction then cuts audio into
    windows of this length (saved with the model)."""
    batch_size: AtLeastOne = 16
    num_workers: Count = 2
    bucket_by_length: bool = False
    """Group training utterances of similar length into batches: less padding, but the per-batch
    CCC loss then sees little variance of any label that length tracks (speaking rate, arousal);
    off by default, as in the paper. Inference always buckets (it cannot change a prediction)."""
    stats_max_files: Count = 0
    """Files read to measure the audio mean/std (a seeded random subset); 0 reads every training file."""
    manifest: str = ""
    """A manifest (CSV or parquet table: path, arousal, valence, dominance, split, ...) listing a corpus in
    any layout; it replaces data.corpus and data.labels; its relative paths start from data.audio_dir when set
    (docs/corpora.md)."""
    scale: Annotated[list[float] | None, Ordered()] = None
    """Rating scale [low, high] of the corpus's labels, e.g. [1, 5]; mapped onto the model's 1-7. Default: the
    manifest's scale_min and scale_max columns, or [1, 7] for the MSP-Podcast layout."""


@dataclass
class EncoderConfig:
    name: str = "microsoft/wavlm-large"
    """Hugging Face hub id or local directory of a wav2vec2-family encoder (WavLM, wav2vec2, HuBERT, data2vec-audio)."""
    pretrained: bool = True
    """Load the pretrained weights; false builds a randomly initialised encoder from `config`."""
    config: dict[str, Any] = field(default_factory=dict)
    """transformers config values; with pretrained false it must name model_type (e.g. wavlm)."""
    freeze_feature_encoder: bool = True
    attention: Attention = "fused"
    """Self-attention kernels: fused (scaled_dot_product_attention; for encoders other than WavLM,
    transformers' sdpa) or eager (transformers' own path). Same weights, same function."""
    sub_batches: AtLeastOne = 4
    """Encode a batch in up to this many length-sorted sub-batches (less padding, same result); 1: whole."""
    layers: Count = 0
    """Keep only the first N transformer layers (0: all): a pretrained encoder is cut after loading
    (audEERING's dimensional model pruned wav2vec2-large from 24 to 12 layers without loss in CCC); with
    pretrained false, N is num_hidden_layers. The model is saved and exported with N layers."""

    @property
    def key(self) -> str:
        """The config key that gives the encoder's architecture."""
        return "model.encoder.name" if self.pretrained else "model.encoder.config"


@dataclass
class ModelConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    pooling: Pooling = "style"
    """style (the paper), attentive (challenge baseline) or mean."""
    pooling_dropout: Dropout = 0.1
    attention_heads: AtLeastOne = 2
    head_hidden: Count = 0
    """Hidden size of the regression and region heads; 0 uses the encoder's hidden size."""
    head_dropout: Dropout = 0.5
    regions: RegionSetName = "octant"
    """Region set of the auxiliary task: octant, sphere30, sphere45, sphere60 or sphere90."""
    origin_radius: NonNegative = 0.0
    """Grid region sets: centred radius up to which a point is in the origin class."""

    def region_set(self) -> RegionSet:
        """The region set of the auxiliary task, with its origin radius."""
        from .sphere import RegionSet

        return RegionSet(self.regions, self.origin_radius)


@dataclass
class ObjectiveConfig:
    aux_schedule: AuxSchedule = "linear"
    """Weight of the auxiliary region loss: linear (decays, then off), constant, or none (no region head)."""
    aux_start: NonNegative = 1.0
    """Weight at epoch 0 (and the weight of the constant schedule)."""
    aux_end: NonNegative = 0.01
    """Linear schedule: w(e) = start + (end - start) * e / decay_epochs for e < decay_epochs, then 0."""
    aux_decay_epochs: AtLeastOne = 5
    class_weights: bool = True
    """Weight the cross-entropy by N / (K * count_c) over the training split."""


@dataclass
class OptimConfig:
    lr: Positive = 1e-5
    weight_decay: NonNegative = 0.01
    accumulate_grad_batches: AtLeastOne = 4
    gradient_clip_val: NonNegative = 0.0
    """0 disables clipping."""


@dataclass
class TrainerConfig:
    max_epochs: AtLeastOne = 20
    seed: Seed = 7
    accelerator: Accelerator = "auto"
    devices: str = "auto"
    """Number of devices, a list such as "0,1", or auto."""
    strategy: str = "auto"
    """auto, ddp, ... (Lightning strategies)."""
    num_nodes: AtLeastOne = 1
    precision: Precision = "auto"
    """auto: 16-mixed on CUDA, 32-true otherwise; or a Lightning precision (bf16-mixed, 32-true, ...)."""
    log_every_n_steps: AtLeastOne = 50
    checkpoint_every_n_steps: Count = 0
    """Also write checkpoints/last.ckpt every N optimiser steps, for a mid-epoch resume; 0: at epoch ends only."""
    compile: bool = False
    """torch.compile the encoder's blocks for training steps (lengths rounded up to a ladder of buckets)."""
    micro_batches_per_step: AtLeastOne = 1
    """Encode this many accumulation micro-batches (of data.batch_size) in one step, each with its own
    loss; must divide optim.accumulate_grad_batches. Same objective, fewer and fuller encoder calls."""
    progress: bool = True


@dataclass
class RunConfig:
    output_dir: str = "runs/emosphere_ser"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def resolved(self, base: str | os.PathLike | None = None) -> RunConfig:
        """This config with its paths (output_dir, data.corpus, data.labels, data.audio_dir) absolute,
        relative ones taken from ``base`` (default: the working directory), as a run records them: the
        run then reads the same from any working directory."""

        def absolute(path: str | None) -> str | None:
            return str(Path(base or ".", Path(path).expanduser()).resolve()) if path else path

        data = dataclasses.replace(
            self.data,
            corpus=absolute(self.data.corpus) or "",
            labels=absolute(self.data.labels),
            audio_dir=absolute(self.data.audio_dir),
        )
        return dataclasses.replace(self, output_dir=absolute(self.output_dir), data=data)

    def save(self, path: str | os.PathLike) -> None:
        write_text_atomic(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


class ConfigError(UserError, ValueError):
    """A config that cannot be used; the message names the key."""


def _check(value: Any, annotation: Any, key: str) -> Any:
    """Return ``value`` converted to ``annotation`` or raise naming ``key``."""
    if dataclasses.is_dataclass(annotation):
        return from_dict(annotation, value, prefix=f"{key}.")
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        kind, *rules = typing.get_args(annotation)
        value = _check(value, kind, key)
        for rule in rules:
            if isinstance(rule, Bounds) and value not in rule:
                raise ConfigError(f"{key}: must be {rule}, got {value!r}")
            if isinstance(rule, Ordered):
                value = rule.check(value, key)
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is not type(None):
                try:
                    return _check(value, option, key)
                except ConfigError:
                    pass
        raise ConfigError(f"{key}: expected {annotation}, got {value!r}")
    if origin is Literal:
        allowed = typing.get_args(annotation)
        if all(isinstance(a, str) for a in allowed) and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # YAML reads precision: 32 as a number
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, allowed))}")
        return value
    expected = origin or annotation
    if expected is float and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            return float(value)  # YAML reads 1e-5 (no dot) as a string
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if expected is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {getattr(expected, '__name__', expected)}, got {value!r}")
    return value


def from_dict(cls: type, values: dict[str, Any] | None, prefix: str = "") -> Any:
    """Build the dataclass ``cls`` from nested dicts, rejecting unknown keys."""
    values = values or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls, include_extras=True)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown config key(s) {[prefix + k for k in unknown]}; known: {sorted(names)}")
    return cls(**{k: _check(v, hints[k], prefix + k) for k, v in values.items()})


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML) to nested dicts, in place."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        *parents, leaf = key.split(".")
        node = values
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
        try:
            node[leaf] = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as error:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({_yaml_problem(error)})") from None
    return values


def _yaml_problem(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{getattr(error, 'problem', None) or type(error).__name__}{where}"


def validate(config: RunConfig) -> RunConfig:
    """Rules between keys that a single key's type cannot state; raises :class:`ConfigError`."""
    data, encoder = config.data, config.model.encoder
    if data.train_split == data.dev_split:
        raise ConfigError(
            f"data.dev_split: {data.dev_split!r} is also data.train_split; model selection needs a held-out split"
        )
    if encoder.pretrained and not encoder.name:
        raise ConfigError("model.encoder.name: empty; give a hub id (e.g. microsoft/wavlm-large) or a local directory")
    if not encoder.pretrained and "model_type" not in encoder.config:
        raise ConfigError(
            "model.encoder.config: with model.encoder.pretrained false it must name model_type "
            "(e.g. wavlm) to build a random encoder"
        )
    if not config.output_dir:
        raise ConfigError("output_dir: empty; give the folder the run is written to")
    if not (config.trainer.devices == "auto" or re.fullmatch(r"-1|\d+|\d+(,\d+)*,?", config.trainer.devices)):
        raise ConfigError(
            f"trainer.devices: {config.trainer.devices!r} is not auto, a count (-1: all) "
            "or a list of indices such as 0,1"
        )
    micro, accumulate = config.trainer.micro_batches_per_step, config.optim.accumulate_grad_batches
    if accumulate % micro:
        raise ConfigError(
            f"trainer.micro_batches_per_step: {micro} does not divide optim.accumulate_grad_batches ({accumulate})"
        )
    return config


def read_yaml(path: str | os.PathLike, what: str) -> Any:
    """The YAML document in ``path`` (None for an empty file); a missing file or invalid YAML is a
    :class:`ConfigError` that names the file (``what`` says what it should have been)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(error)})") from None


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> RunConfig:
    """A run config from a YAML recipe (or the defaults) plus dotted overrides."""
    values = {} if path is None else read_yaml(path, "config file") or {}
    apply_overrides(values, list(overrides or []))
    return validate(from_dict(RunConfig, values))
