"""Checks that run before any work, so that a mistake costs seconds, not a run.

:func:`check_corpus` reads the label table (:func:`emosphere.labels.scan_consensus`)
and the audio headers (:func:`emosphere.labels.read_headers`: no decoding;
``decode=True`` reads every sample) and reports every problem at once, with
line numbers, plus a summary: hours per split, utterances per region and per
class, sample rates. ``emosphere check`` prints it; training runs it on the
splits it reads.

Errors block training (``emosphere train`` and ``emosphere check`` exit with
code 2): a label that is missing, not a number or outside [1, 7]; an empty
``FileName`` or ``Split_Set``; a repeated ``FileName``; a listed audio file
that is missing, unreadable or shorter than the encoder's minimum input; a
split the run needs that has no usable rows. Warnings do not: audio on disk
that the table does not list, a ``Split_Set`` no run reads, an unknown
``EmoClass``.

:func:`preflight` is everything a training run checks before it writes
anything: the config's paths, the encoder, the corpus.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .audio import AUDIO_EXTENSIONS, SAMPLE_RATE
from .config import ConfigError, DataConfig, EncoderConfig, ModelConfig, RunConfig
from .errors import UserError, first_line
from .labels import (
    FILE_NOT_FOUND,
    HEADER_COLUMNS,
    LABEL_COLUMNS,
    Corpus,
    annotate,
    audio_paths,
    counts,
    problems_table,
    read_headers,
    scan_labels,
    summarise_problems,
    table_scale,
    usable_rows,
    with_audio,
)
from .rundir import RunDir
from .sphere import SCALE_MAX, SCALE_MIN, RegionSet

log = logging.getLogger(__name__)

MSP_SPLITS = ("Train", "Development", "Test1", "Test2", "Test3")
DEFAULT_MIN_SAMPLES = 400
"""The shortest input (25 ms at 16 kHz) that gives a wav2vec2-family encoder one frame."""
BUILD_ERRORS = (ValueError, RuntimeError, TypeError, KeyError, AssertionError, ZeroDivisionError, IndexError)
"""What torch and transformers raise for module sizes that do not fit together."""


class CorpusError(UserError):
    """A corpus with problems that block the work asked for."""


@dataclass
class CorpusReport:
    """What :func:`check_corpus` found."""

    corpus: Corpus
    regions: RegionSet
    table: pd.DataFrame
    """The rows checked, with ``path``, ``duration`` and the :data:`~emosphere.labels.HEADER_COLUMNS`."""
    problems: pd.DataFrame
    """A :data:`~emosphere.problems.PROBLEM_COLUMNS` table."""
    splits: Sequence[str] | None

    @property
    def errors(self) -> pd.DataFrame:
        return self.problems[self.problems["severity"] == "error"]

    @property
    def warnings(self) -> pd.DataFrame:
        return self.problems[self.problems["severity"] == "warning"]

    @property
    def prepared(self) -> pd.DataFrame:
        """The rows whose audio can be read, as :func:`emosphere.labels.prepare_labels` makes them."""
        rows = self.table[self.table["error"].isna() & _labelled(self.table)]
        extra = [column for column in HEADER_COLUMNS if column != "duration"]
        return annotate(rows.drop(columns=extra).reset_index(drop=True), self.regions)

    def raise_for_errors(self) -> None:
        """Raise :class:`CorpusError` if any problem blocks training."""
        if len(self.errors):
            raise CorpusError(
                f"{self.corpus.labels}: {len(self.errors)} problem(s) block training (listed above; "
                "`emosphere check ... --problems FILE` writes them all)"
            )

    def summary(self) -> str:
        """Hours per split, utterances per region and per class, sample rates and channels."""
        table = self.table[self.table["error"].isna()]
        per_split = table.groupby("Split_Set")["duration"].agg(["count", "sum", "min", "max"])
        per_split.columns = ["utterances", "hours", "shortest s", "longest s"]
        per_split["hours"] /= 3600
        labelled = self.prepared
        parts = [
            f"{self.corpus.labels}: {len(self.table)} row(s) checked"
            + (f" (splits {', '.join(self.splits)})" if self.splits is not None else "")
            + f"; {len(self.errors)} error(s), {len(self.warnings)} warning(s)",
            per_split.round(3).to_string(),
            f"sample rates (Hz): {_tally(table['sample_rate'])}; channels: {_tally(table['channels'])}",
        ]
        if "scale_min" in self.table:
            parts.insert(1, f"labels on the {table_scale(self.table).label} scale (mapped onto the model's 1-7)")
        if len(labelled):
            parts.append(
                f"utterances per region ({self.regions.name}) and split:\n" + counts(labelled, self.regions).to_string()
            )
            classes = pd.crosstab(labelled["EmoClass"], labelled["Split_Set"], margins=True, margins_name="total")
            parts.append("utterances per EmoClass and split:\n" + classes.to_string())
        return "\n".join(parts)


def _tally(values: pd.Series) -> str:
    return ", ".join(f"{k}: {n}" for k, n in values.value_counts().sort_index().items())


def _labelled(table: pd.DataFrame) -> pd.Series:
    values = table[list(LABEL_COLUMNS)]
    return (values >= SCALE_MIN).all(axis=1) & (values <= SCALE_MAX).all(axis=1)


def _unlisted_audio(audio_dir: Path, listed: set[str]) -> list[str]:
    """Audio files under ``audio_dir`` (recursive) whose relative path is not in ``listed``."""
    found = []
    for folder, _, names in os.walk(audio_dir):
        for name in names:
            if Path(name).suffix.lower() in AUDIO_EXTENSIONS:
                relative = os.path.relpath(os.path.join(folder, name), audio_dir)
                if relative not in listed:
                    found.append(relative)
    return sorted(found)


def check_corpus(
    corpus: Corpus,
    regions: RegionSet,
    *,
    splits: Sequence[str] | None = None,
    keep_other: bool = False,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    decode: bool = False,
    workers: int = 8,
    progress: bool = True,
) -> CorpusReport:
    """Check a corpus: the label table, then the audio of the rows a run reads.

    With ``splits`` (a training run's), those are the labelled rows of ``splits``
    (EmoClass O and X only with ``keep_other``; a manifest's rows as listed), and
    each split must have some; without, every row of the table. Audio headers are
    read by ``workers`` threads; ``decode`` reads every sample instead (finds
    corrupt or truncated data and NaN samples, at the cost of decoding the corpus
    once). Raises :class:`CorpusError` if the audio folder is missing; every
    other problem is in the report. The MSP-Podcast layout also warns of
    unknown ``Split_Set`` values and of audio on disk that the table does not
    list; a manifest names its own splits and lists what it uses.
    """
    if not corpus.audio_dir.is_dir():
        raise CorpusError(f"{corpus.audio_dir}: audio folder not found")
    table, problems = scan_labels(corpus)
    found = [problems] if corpus.is_manifest else [problems, _unknown_splits(corpus, table, splits)]
    if splits is None:
        rows = table[table["FileName"].notna()]
    else:
        rows = usable_rows(table, keep_other=keep_other or corpus.is_manifest, splits=splits)
        present = sorted(table["Split_Set"].dropna().unique())
        for name in splits:
            if not (rows["Split_Set"] == name).any():
                found.append(
                    problems_table(
                        "error",
                        f"split {name!r} has no usable labelled rows",
                        corpus.labels,
                        [],
                        [f"Split_Set values: {', '.join(present)}"],
                    )
                )
    rows, audio_problems = _check_audio(
        corpus, rows, min_samples=min_samples, decode=decode, workers=workers, progress=progress
    )
    found.append(audio_problems)
    if not corpus.is_manifest:
        unlisted = _unlisted_audio(corpus.audio_dir, set(table["FileName"].dropna()))
        found.append(
            problems_table(
                "warning",
                "audio file on disk not in the label table",
                [str(corpus.audio_dir / name) for name in unlisted],
                [],
                [""] * len(unlisted),
            )
        )
    return CorpusReport(corpus, regions, rows, pd.concat(found, ignore_index=True), splits)


def _unknown_splits(corpus: Corpus, table: pd.DataFrame, splits: Sequence[str] | None) -> pd.DataFrame:
    """Warnings for ``Split_Set`` values that are not MSP-Podcast's nor among ``splits``."""
    known = list(MSP_SPLITS) + [s for s in splits or () if s not in MSP_SPLITS]
    other = table["Split_Set"].notna() & ~table["Split_Set"].isin(known)
    return problems_table(
        "warning",
        f"Split_Set not one of {', '.join(known)} (no run reads these rows)",
        corpus.labels,
        table.index[other] + 2,
        table.loc[other, "Split_Set"].tolist(),
    )


def _check_audio(
    corpus: Corpus, rows: pd.DataFrame, *, min_samples: int, decode: bool, workers: int, progress: bool
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows with ``path``, ``duration`` and the header columns, and the problems of their audio
    (missing, unreadable, too short), at the rows' lines of the label table."""
    headers = read_headers(audio_paths(rows, corpus.audio_dir), decode=decode, workers=workers, progress=progress)
    headers.index = rows.index
    rows = with_audio(rows, corpus.audio_dir, headers)
    rows[headers.columns.drop("duration")] = headers.drop(columns="duration")
    lines = rows.index + 2
    missing = (headers["error"] == FILE_NOT_FOUND).to_numpy()
    unreadable = (headers["error"].notna() & ~missing).to_numpy()
    short = headers["error"].isna().to_numpy() & (rows["duration"].to_numpy() * SAMPLE_RATE < min_samples)
    rows.loc[short, "error"] = "too short"
    problems = [
        problems_table(
            "error", "listed audio file not found", corpus.labels, lines[missing], rows.loc[missing, "path"].tolist()
        ),
        problems_table(
            "error",
            "audio file unreadable",
            corpus.labels,
            lines[unreadable],
            [f"{p}: {e}" for p, e in zip(rows.loc[unreadable, "path"], headers.loc[unreadable, "error"])],
        ),
        problems_table(
            "error",
            f"audio shorter than the encoder's minimum input ({min_samples} samples at 16 kHz)",
            corpus.labels,
            lines[short],
            [f"{p}: {d:.4f} s" for p, d in zip(rows.loc[short, "path"], rows.loc[short, "duration"])],
        ),
    ]
    return rows, pd.concat(problems, ignore_index=True)


def log_problems(report: CorpusReport, limit: int = 10) -> None:
    """One log line per kind of problem (errors, then warnings)."""
    for line in summarise_problems(report.errors, limit):
        log.error("%s", line)
    for line in summarise_problems(report.warnings, limit):
        log.warning("%s", line)


# --- a training run's pre-flight ------------------------------------------------------------------


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
    input that gives it one frame; raise :class:`ConfigError` naming the key when it cannot be had."""
    hf_config = _hf_config(encoder)
    if not hasattr(hf_config, "conv_kernel"):
        raise ConfigError(
            f"{encoder.key}: {encoder.name!r} is a {hf_config.model_type} model, not a wav2vec2-family "
            "speech encoder (WavLM, wav2vec2, HuBERT, data2vec-audio)"
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
