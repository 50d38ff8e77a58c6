"""A training run's directory: its layout, in one place, and what can be read from it.

:class:`RunDir` owns every path of a run; no other module spells one. A run
directory (written by :mod:`emosphere.train`) holds:

* ``config.yaml``: the run's full config, its paths absolute, so that the run
  reads the same from any working directory;
* ``labels.csv``: the prepared label table of the splits training read;
* ``audio_stats.json``: normalisation statistics of the training audio;
* ``checkpoints/``: Lightning checkpoints, ``last.ckpt`` (for ``--resume``)
  and the best;
* ``logs/version_N/metrics.csv``: metrics per step and epoch, one folder per
  start or resume; ``tensorboard/version_N/``: the same for TensorBoard;
* ``model/``: the best model as a model directory (:mod:`emosphere.model`);
* ``eval_<split>/``: once evaluated, ``metrics.json``, ``predictions.csv`` and
  ``predictions_full.csv`` (:func:`emosphere.evaluate.evaluate_run`);
* ``ablation.json``: for a variant of an ablation set, its state (:mod:`emosphere.ablate`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .config import RunConfig, load_config
from .errors import UserError
from .io import read_table

if TYPE_CHECKING:
    from .labels import Corpus


class RunDir:
    """The directory of one training run (see the module docstring)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    config_file = property(lambda self: self.path / "config.yaml")
    labels_file = property(lambda self: self.path / "labels.csv")
    stats_file = property(lambda self: self.path / "audio_stats.json")
    checkpoints = property(lambda self: self.path / "checkpoints")
    last_checkpoint = property(lambda self: self.path / "checkpoints" / "last.ckpt")
    model_dir = property(lambda self: self.path / "model")
    ablation_state = property(lambda self: self.path / "ablation.json")

    def eval_dir(self, split: str) -> Path:
        return self.path / f"eval_{split}"

    def metrics_file(self, split: str) -> Path:
        return self.eval_dir(split) / "metrics.json"

    @property
    def has_model(self) -> bool:
        """Whether training finished and saved its model."""
        return (self.model_dir / "config.json").is_file()

    @staticmethod
    def holds_run(path: str | os.PathLike) -> bool:
        """Whether ``path`` is a run directory with a trained model."""
        run = RunDir(path)
        return run.config_file.is_file() and run.has_model

    @classmethod
    def open(cls, path: str | os.PathLike) -> RunDir:
        """The run at ``path``; :class:`UserError` naming what is missing if it is not one."""
        run = cls(path)
        if not run.path.is_dir():
            raise UserError(f"{run.path}: no such run directory")
        if not run.config_file.is_file():
            raise UserError(f"{run.path}: not a run directory (no {run.config_file.name}; emosphere train writes one)")
        return run

    def config(self) -> RunConfig:
        """The run's config. A run recorded before its paths were made absolute keeps them as typed,
        relative to where it was trained: the run directory's path less the ``output_dir`` it records."""
        config = load_config(self.config_file)
        recorded = Path(config.output_dir).parts
        here = self.path.resolve().parts
        if Path(config.output_dir).is_absolute() or here[-len(recorded) :] != recorded:
            return config
        return config.resolved(base=Path(*here[: -len(recorded)]))

    def metric_log(self) -> pd.DataFrame:
        """Every ``logs/version_N/metrics.csv``, in version order, with a ``version`` column; empty
        when the run logged nothing."""
        paths = list(self.path.glob("logs/version_*/metrics.csv"))
        versions = sorted((int(re.sub(r"\D", "", p.parent.name) or 0), p) for p in paths)
        tables = [pd.read_csv(p).assign(version=v) for v, p in versions]
        return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["epoch", "step", "version"])

    def split_rows(self, split_name: str, corpus: Corpus | None = None) -> pd.DataFrame:
        """The prepared rows of a split: from ``corpus`` when given (a corpus that has moved), else
        from ``labels.csv`` when it has the split, else prepared from the corpus the config names
        (as ``emosphere evaluate`` does)."""
        from .labels import Corpus, prepare_labels, split

        config = self.config()
        if corpus is None and self.labels_file.is_file():
            table = read_table(self.labels_file)
            if (table["Split_Set"] == split_name).any():
                return split(table, split_name)
        corpus = corpus or Corpus.from_config(config.data)
        table = prepare_labels(corpus, config.model.region_set(), keep_other=config.data.keep_other, progress=False)
        return split(table, split_name)

    def speaker_table(self, files: pd.Series, corpus: Corpus | None = None) -> pd.DataFrame | None:
        """A label table holding ``FileName``, ``Gender`` and ``SpkrID`` for ``files``: ``labels.csv``
        when it covers them, else the label file of ``corpus`` (default: the run's); None if neither
        can be read."""
        if corpus is None and self.labels_file.is_file():
            table = read_table(self.labels_file)
            if set(files) <= set(table["FileName"]):
                return table
        from .labels import Corpus, LabelError, read_labels

        try:
            return read_labels(corpus or Corpus.from_config(self.config().data))
        except (LabelError, OSError):
            return None

    def evaluation(self, split_name: str) -> tuple[dict[str, Any], pd.DataFrame] | None:
        """The metrics and ``predictions_full.csv`` of ``eval_<split>/``, or None when they are missing
        or older than the run's model."""
        folder = self.eval_dir(split_name)
        metrics, weights = self.metrics_file(split_name), self.model_dir / "model.safetensors"
        if not (metrics.is_file() and (folder / "predictions_full.csv").is_file()):
            return None
        if weights.is_file() and metrics.stat().st_mtime < weights.stat().st_mtime:
            return None
        return json.loads(metrics.read_text()), read_table(folder / "predictions_full.csv")


def epoch_metrics(log: pd.DataFrame) -> pd.DataFrame:
    """One row per epoch of a :meth:`RunDir.metric_log`: for each logged column, its last value in
    that epoch (a resumed epoch overrides the interrupted one); ``train/aux_weight`` is per step,
    so its first value."""
    if log.empty or "epoch" not in log:
        return pd.DataFrame()
    values = log.drop(columns=[c for c in ("step", "version") if c in log]).groupby("epoch").last()
    if "train/aux_weight" in log:
        weights = log.dropna(subset=["train/aux_weight"])
        values["train/aux_weight"] = weights.groupby("epoch")["train/aux_weight"].first()
    values.index = values.index.astype(int)
    return values
