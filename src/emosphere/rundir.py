"""Reading a training run directory (written by :mod:`emosphere.train`).

A run directory holds ``config.yaml``, ``labels.csv``, ``logs/version_N/metrics.csv``
(one folder per start or resume), ``model/`` and, once evaluated,
``eval_<split>/metrics.json`` and ``predictions_full.csv``. The report and the
ablation table read runs only through these functions:

* :func:`open_run`: the run's config, or a :class:`FileNotFoundError` naming what is missing;
* :func:`metric_log` / :func:`epoch_metrics`: the logged curves, every version in order;
* :func:`split_rows`: the prepared rows of a split: from ``labels.csv`` (training prepares
  its training and development splits), else prepared from the run's corpus;
* :func:`evaluation`: the metrics and predictions of a split, evaluating the run's best
  model first (through :func:`emosphere.evaluate.evaluate`) when ``eval_<split>/`` is missing.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd

from .config import RunConfig, load_config
from .io import read_table

CONFIG = "config.yaml"
LABELS = "labels.csv"


def open_run(run_dir: str | os.PathLike) -> RunConfig:
    """The run's config; raise :class:`FileNotFoundError` if ``run_dir`` is not a run directory."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run directory")
    if not (run_dir / CONFIG).is_file():
        raise FileNotFoundError(f"{run_dir}: not a run directory (no {CONFIG}; train writes one)")
    return load_config(run_dir / CONFIG)


def metric_log(run_dir: str | os.PathLike) -> pd.DataFrame:
    """Every ``logs/version_N/metrics.csv`` of the run, in version order, with a ``version``
    column; empty when the run logged nothing."""
    paths = list(Path(run_dir).glob("logs/version_*/metrics.csv"))
    versions = sorted((int(re.sub(r"\D", "", p.parent.name) or 0), p) for p in paths)
    tables = [pd.read_csv(p).assign(version=v) for v, p in versions]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["epoch", "step", "version"])


def epoch_metrics(log: pd.DataFrame) -> pd.DataFrame:
    """One row per epoch: for each logged column, its last value in that epoch (a resumed
    epoch overrides the interrupted one); ``train/aux_weight`` is per step, so its first value."""
    if log.empty or "epoch" not in log:
        return pd.DataFrame()
    values = log.drop(columns=[c for c in ("step", "version") if c in log]).groupby("epoch").last()
    if "train/aux_weight" in log:
        weights = log.dropna(subset=["train/aux_weight"])
        values["train/aux_weight"] = weights.groupby("epoch")["train/aux_weight"].first()
    values.index = values.index.astype(int)
    return values


def split_rows(run_dir: str | os.PathLike, split: str) -> pd.DataFrame:
    """The prepared rows of ``split``: from the run's ``labels.csv`` when it has them, else prepared
    from the corpus the run's config names (as ``emosphere evaluate`` does)."""
    from .labels import Corpus, prepare_labels
    from .labels import split as rows_of
    from .sphere import RegionSet

    run_dir = Path(run_dir)
    if (run_dir / LABELS).is_file():
        table = read_table(run_dir / LABELS)
        if (table["Split_Set"] == split).any():
            return rows_of(table, split)
    config = open_run(run_dir)
    data, model = config.data, config.model
    corpus = Corpus.at(data.corpus or ".", data.labels, data.audio_dir)
    table = prepare_labels(
        corpus, RegionSet(model.regions, model.origin_radius), keep_other=data.keep_other, progress=False
    )
    return rows_of(table, split)


def evaluation(
    run_dir: str | os.PathLike, split: str, *, batch_size: int = 16, device: str = "cpu"
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Metrics and ``predictions_full.csv`` of ``eval_<split>/``; when they are missing or older
    than the run's ``model/``, the model is evaluated on the split (:func:`split_rows`) and the
    folder is written."""
    run_dir = Path(run_dir)
    output = run_dir / f"eval_{split}"
    metrics_path, weights = output / "metrics.json", run_dir / "model" / "model.safetensors"
    if (
        metrics_path.is_file()
        and (output / "predictions_full.csv").is_file()
        and (not weights.is_file() or metrics_path.stat().st_mtime >= weights.stat().st_mtime)
    ):
        return json.loads(metrics_path.read_text()), read_table(output / "predictions_full.csv")
    from .evaluate import evaluate, write_evaluation
    from .model import EmoSphereSER

    if not (run_dir / "model").exists():
        raise FileNotFoundError(
            f"{run_dir}: no model to evaluate split {split!r} with (the run did not finish training?)"
        )
    rows = split_rows(run_dir, split)
    model = EmoSphereSER.from_pretrained(run_dir / "model", device=device)
    metrics, predictions = evaluate(model, rows, split=split, batch_size=batch_size, device=device)
    write_evaluation(metrics, predictions, output)
    return metrics, predictions
