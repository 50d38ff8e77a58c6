"""A training run's pre-flight: everything it checks before it writes anything, so that a mistake
costs seconds, not a run.

:func:`preflight` checks the config's paths (:func:`check_paths`), the Lightning strategy, the
encoder's transformers config (:func:`encoder_min_samples`: it exists, is a speech encoder, has the
layers asked for), that the model it describes can be built (:func:`check_model_builds`, on the meta
device), then the corpus (:func:`emosphere.check.check_corpus`). Each mistake is a
:class:`~emosphere.config.ConfigError` naming the key, or the corpus report's errors.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from .check import CorpusReport, check_corpus, log_problems
from .config import ConfigError, DataConfig, EncoderConfig, ModelConfig, RunConfig
from .errors import first_line
from .labels import Corpus
from .rundir import RunDir

log = logging.getLogger(__name__)

BUILD_ERRORS = (ValueError, RuntimeError, TypeError, KeyError, AssertionError, ZeroDivisionError, IndexError)
"""What torch and transformers raise for module sizes that do not fit together."""


def _hf_config(encoder: EncoderConfig) -> Any:
    """The encoder's transformers config (no weights are loaded); :class:`ConfigError` naming the key."""
    from huggingface_hub.errors import StrictDataclassError
    from transformers import AutoConfig

    values = dict(encoder.config)
    try:
        if encoder.pretrained:
            values.pop("model_type", None)
            return AutoConfig.from_pretrained(encoder.name, **values)
        return AutoConfig.for_model(values.pop("model_type"), **values)
    except (OSError, ValueError, KeyError, TypeError, StrictDataclassError) as error:
        raise ConfigError(
            f"{encoder.key}: cannot get the encoder config of {encoder.name!r} ({first_line(error)})"
        ) from error


def encoder_min_samples(encoder: EncoderConfig) -> int:
    """Resolve the encoder's transformers config (no weights are loaded) and return the shortest
    input that gives it one frame; raise :class:`ConfigError` naming the key when it cannot be had, or
    when ``layers`` asks a pretrained encoder for more transformer layers than it has."""
    hf_config = _hf_config(encoder)
    if not hasattr(hf_config, "conv_kernel"):
        raise ConfigError(
            f"{encoder.key}: {encoder.name!r} is a {hf_config.model_type} model, not a wav2vec2-family "
            "speech encoder (WavLM, wav2vec2, HuBERT, data2vec-audio)"
        )
    if encoder.pretrained and encoder.layers > hf_config.num_hidden_layers:
        raise ConfigError(
            f"model.encoder.layers: {encoder.layers}, but {encoder.name!r} has {hf_config.num_hidden_layers} "
            "transformer layers"
        )
    from .encoder import min_input_samples

    return min_input_samples(hf_config)


def check_model_builds(model: ModelConfig) -> None:
    """Build the model the config describes on torch's meta device (shapes only: no memory, no weights
    loaded), so that a model that cannot exist stops a run before any work: a hidden size that the
    attention heads or positional convolution groups do not divide, any other encoder config that
    cannot build, or pooling that does not fit the encoder, is a :class:`ConfigError`."""
    import torch
    from transformers import AutoModel

    from .encoder import Encoder
    from .model import EmoSphereSER

    encoder, hf_config, key = model.encoder, _hf_config(model.encoder), model.encoder.key
    for name in ("num_attention_heads", "num_conv_pos_embedding_groups"):
        if (parts := getattr(hf_config, name, 0)) and hf_config.hidden_size % parts:
            raise ConfigError(f"{key}: hidden_size {hf_config.hidden_size} is not divisible by {name} {parts}")
    with torch.device("meta"):
        try:
            options = {"attention": encoder.attention, "sub_batches": encoder.sub_batches}
            built = Encoder(AutoModel.from_config(hf_config), encoder.freeze_feature_encoder, **options)
        except BUILD_ERRORS as error:
            raise ConfigError(f"{key}: the encoder cannot be built ({first_line(error)})") from None
        try:
            EmoSphereSER(model, built)
        except BUILD_ERRORS as error:
            raise ConfigError(f"model: pooling and heads do not fit the encoder ({first_line(error)})") from None


def _manifest_paths(data: DataConfig) -> Corpus:
    unused = [f"data.{key}={getattr(data, key)}" for key in ("corpus", "labels") if getattr(data, key)]
    if unused:  # a recipe names its corpus folder; a manifest given on top of it replaces it
        log.warning("data.manifest is the corpus; not used: %s", ", ".join(unused))
    if not Path(data.manifest).is_file():
        raise ConfigError(f"data.manifest: {data.manifest}: manifest not found")
    if data.audio_dir and not Path(data.audio_dir).is_dir():
        raise ConfigError(f"data.audio_dir: {data.audio_dir}: audio folder not found")
    return Corpus.from_config(data)


def _folder_paths(data: DataConfig) -> Corpus:
    if not data.corpus and not data.labels:
        raise ConfigError(
            "data.corpus: not set; give the folder with Audios/ and Labels/labels_consensus.csv "
            "(e.g. data.corpus=/data/MSP-Podcast), or a manifest (data.manifest=FILE)"
        )
    if data.corpus and not Path(data.corpus).is_dir():
        raise ConfigError(f"data.corpus: {data.corpus}: no such folder")
    corpus = Corpus.from_config(data)
    if not corpus.labels.is_file():
        raise ConfigError(f"data.labels: {corpus.labels}: label file not found")
    if not corpus.audio_dir.is_dir():
        raise ConfigError(f"data.audio_dir: {corpus.audio_dir}: audio folder not found")
    return corpus


def check_paths(config: RunConfig, *, resume: bool = False) -> Corpus:
    """The corpus (:meth:`Corpus.from_config`), the output folder and the checkpoint to resume from exist or can
    be made."""
    corpus = _manifest_paths(config.data) if config.data.manifest else _folder_paths(config.data)
    output = Path(config.output_dir)
    if output.exists() and not output.is_dir():
        raise ConfigError(f"output_dir: {output} exists and is not a folder")
    existing = next(p for p in (output, *output.absolute().parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"output_dir: {output}: cannot write under {existing}")
    last = RunDir(output).last_checkpoint
    if resume and not last.is_file():
        raise ConfigError(f"--resume: no checkpoint at {last}")
    return corpus


def check_strategy(strategy: str) -> None:
    from lightning.pytorch.strategies import StrategyRegistry

    allowed = ["auto", *StrategyRegistry.available_strategies()]
    if strategy not in allowed:
        raise ConfigError(f"trainer.strategy: {strategy!r} is not one of {', '.join(allowed)}")


def preflight(config: RunConfig, *, resume: bool = False, decode: bool = False, progress: bool = True) -> CorpusReport:
    """Check everything a training run needs before it writes anything: paths, the Lightning
    strategy, the encoder's config (raising :class:`ConfigError`), then the corpus
    (:func:`check_corpus` on the training and development splits; its problems are logged,
    :meth:`CorpusReport.raise_for_errors` stops on them)."""
    corpus = check_paths(config, resume=resume)
    check_strategy(config.trainer.strategy)
    min_samples = encoder_min_samples(config.model.encoder)
    check_model_builds(config.model)
    data = config.data
    report = check_corpus(
        corpus,
        config.model.region_set(),
        splits=(data.train_split, data.dev_split),
        keep_other=data.keep_other,
        min_samples=min_samples,
        decode=decode,
        workers=max(8, data.num_workers),
        progress=progress and config.trainer.progress,
    )
    log_problems(report)
    return report
