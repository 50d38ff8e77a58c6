"""Evaluation of a trained model on a labelled split: metrics over the whole
split and predictions in the challenge format.

Each file is predicted through the engine
(:mod:`emosphere.engine`: windows, batches, clipped duration-weighted
aggregation), so ``emosphere evaluate``, ``emosphere predict`` and training's
development pass give the same value for the same file; :func:`score` turns
file-level predictions into the metrics for both this module and training,
with bootstrap intervals (:mod:`emosphere.bootstrap`) when asked.

Predictions are reported on the rating scale of the corpus they are evaluated
on (:func:`emosphere.labels.table_scale`: 1-7 for MSP-Podcast, 1-5 for
IEMOCAP, ...): ``predictions.csv``, ``predictions_full.csv`` (whose
``scale_min`` and ``scale_max`` columns state it) and the summary; CCC does not
depend on the scale."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from .bootstrap import DEFAULT_RESAMPLES, DEFAULT_SEED, format_interval, score_intervals, speaker_groups
from .config import DataConfig, InferencePrecision, from_dict
from .engine import Failure, Options, Prediction, Predictor, file_values
from .errors import UserError
from .io import write_table, write_text_atomic
from .labels import LABEL_COLUMNS, Corpus, LabelError, prepare_labels, split, table_scale
from .load import load_predictor
from .metrics import region_metrics, regression_metrics
from .rundir import RunDir
from .schema import describe
from .sphere import DIMENSIONS, RegionSet, from_unit

CHALLENGE_COLUMNS = ("FileName", "EmoAct", "EmoVal", "EmoDom")


@dataclass(frozen=True)
class Intervals:
    """How :func:`score` bootstraps its 95 % intervals: resampling utterances or whole speakers
    (the honest choice when a speaker's utterances are correlated), how many replicates (0: none), seed."""

    by: Literal["utterance", "speaker"] = "utterance"
    resamples: int = DEFAULT_RESAMPLES
    seed: int = DEFAULT_SEED


def score(
    table: pd.DataFrame,
    avd_unit: np.ndarray,
    region_probs: np.ndarray | None,
    regions: RegionSet,
    *,
    split: str,
    intervals: Intervals | None = None,
) -> dict[str, Any]:
    """Metrics of file-level predictions (``avd_unit`` (n, 3) on [0, 1], ``region_probs`` (n, K) or
    None; see :func:`emosphere.engine.aggregate`) against the rows of a prepared label ``table``
    in the same order: CCC per dimension and mean over all rows; region accuracy, macro-F1 and UAR
    from the region head when there is one, else from the region of the predicted point
    (``region.source`` says which); with ``intervals``, their bootstrap intervals (``intervals``)."""
    predicted, true = from_unit(avd_unit), table[list(LABEL_COLUMNS)].to_numpy(np.float64)
    if region_probs is not None:
        region_pred, source = region_probs.argmax(1), "classifier"
    else:
        region_pred, source = regions.assign(predicted), "regression"
    metrics = {
        "split": split,
        "n": len(table),
        "ccc": regression_metrics(predicted, true),
        "region": {
            **region_metrics(region_pred, table["region"].to_numpy(), regions.num_classes),
            "source": source,
            "region_set": regions.name,
        },
        "scale": f"CCC on the {table_scale(table).label} scale",
    }
    if intervals is not None and intervals.resamples:
        if intervals.by == "speaker" and "SpkrID" not in table:
            raise LabelError(f"split {split!r}: no speaker IDs (SpkrID, or a manifest's speaker column) to resample")
        metrics["intervals"] = score_intervals(
            predicted,
            true,
            region_pred=region_pred,
            region_target=table["region"].to_numpy(),
            num_classes=regions.num_classes,
            by=intervals.by,
            groups=speaker_groups(table["SpkrID"]) if intervals.by == "speaker" else None,
            resamples=intervals.resamples,
            seed=intervals.seed,
        )
    return metrics


def evaluate(
    predictor: Predictor,
    table: pd.DataFrame,
    regions: RegionSet,
    *,
    split: str,
    progress: bool = False,
    intervals: Intervals | None = Intervals(),
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Metrics (:func:`score`, in the region set the ``table`` was prepared with) and a prediction
    table on the corpus's scale for the rows of a prepared label ``table`` (one split), each file
    predicted by ``predictor`` as ``emosphere predict`` predicts it. Files that cannot be predicted
    (unreadable, too short) are left out of the metrics and listed in ``metrics["skipped"]``; if
    none can be predicted, :class:`LabelError`."""
    paths = table["path"].tolist()
    results = list(predictor.stream(enumerate(paths), total=len(paths), progress=progress))
    predicted = [r for r in results if isinstance(r, Prediction)]
    skipped = [{"file": r.name, "error": r.error} for r in results if isinstance(r, Failure)]
    if not predicted:
        raise LabelError(
            f"split {split!r}: no file could be predicted, e.g. {skipped[0]['file']}: {skipped[0]['error']}"
        )
    rows = table.iloc[[p.index for p in predicted]].reset_index(drop=True)
    avd, probs = file_values(predicted)
    metrics = {**score(rows, avd, probs, regions, split=split, intervals=intervals), "skipped": skipped}
    scale = table_scale(rows)
    silent = [p.silent for p in predicted]
    described = describe(avd, probs, predictor.region_names, predictor.regions, silent, scale)
    predictions = pd.concat([rows[["FileName"]], described], axis=1)
    predictions[["EmoAct", "EmoVal", "EmoDom"]] = described[list(DIMENSIONS)].to_numpy()
    predictions[[f"true_{c}" for c in LABEL_COLUMNS]] = scale.from_model(rows[list(LABEL_COLUMNS)].to_numpy())
    predictions["true_region"] = rows["region_name"].to_numpy()
    if "SpkrID" in rows:  # what compare --by speaker resamples
        predictions["SpkrID"] = rows["SpkrID"].to_numpy()
    predictions["scale_min"], predictions["scale_max"] = scale.low, scale.high
    return metrics, predictions


def prediction_arrays(predictions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(predicted, true) (n, 3) A/V/D of an :func:`evaluate` prediction table, on the model's 1-7 scale
    whatever the corpus's (the table's ``scale_min``/``scale_max``)."""
    scale = table_scale(predictions)
    predicted = predictions[list(DIMENSIONS)].to_numpy(np.float64)
    true = predictions[[f"true_{c}" for c in LABEL_COLUMNS]].to_numpy(np.float64)
    return scale.to_model(predicted), scale.to_model(true)


def write_evaluation(metrics: dict[str, Any], predictions: pd.DataFrame, output_dir: str | os.PathLike) -> Path:
    """``metrics.json``, ``predictions.csv`` (challenge format: FileName,EmoAct,EmoVal,EmoDom on 1-7)
    and ``predictions_full.csv`` (every column of :func:`emosphere.schema.describe` plus the labels)."""
    output_dir = Path(output_dir)
    write_text_atomic(output_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    write_table(predictions[list(CHALLENGE_COLUMNS)], output_dir / "predictions.csv")
    write_table(predictions, output_dir / "predictions_full.csv")
    return output_dir


def format_metrics(metrics: dict[str, Any]) -> str:
    """A short human-readable summary (with the 95 % intervals in brackets when there are any)."""
    region, bounds = metrics["region"], metrics.get("intervals", {})

    def value(part: str, name: str) -> str:
        interval = bounds.get(part, {}).get(name)
        number = metrics[part][name]
        return f"{number:.3f}" if interval is None else format_interval(number, interval)

    skipped = metrics.get("skipped")
    resampled = f" | 95 % intervals over {bounds['units']} {bounds['by']}s" if bounds else ""
    return (
        f"{metrics['split']} (n={metrics['n']}): CCC arousal {value('ccc', 'arousal')}  valence "
        f"{value('ccc', 'valence')}  dominance {value('ccc', 'dominance')}  mean {value('ccc', 'mean')} | region "
        f"({region['source']}) accuracy {value('region', 'accuracy')}  macro-F1 {value('region', 'macro_f1')}  "
        f"UAR {value('region', 'uar')}" + resampled + (f" | {len(skipped)} file(s) skipped" if skipped else "")
    )


def evaluate_model(
    model: str | os.PathLike,
    split_name: str,
    *,
    corpus: Corpus | None = None,
    keep_other: bool | None = None,
    options: Options | None = None,
    device: str = "cpu",
    precision: InferencePrecision = "fp32",
    progress: bool = False,
    intervals: Intervals | None = Intervals(),
) -> tuple[dict[str, Any], pd.DataFrame]:
    """:func:`evaluate` a model directory (or hub id) on a split of ``corpus`` (default: the corpus its
    training run named), prepared in the model's region set; ``keep_other`` defaults to the run's."""
    predictor = load_predictor(model, options, backend="torch", device=device, precision=precision)
    loaded = predictor.backend.model
    run_data = (loaded.run_config or {}).get("data") or {}
    if corpus is None:
        if not any(run_data.get(key) for key in ("corpus", "labels", "manifest")):
            raise LabelError(f"{model}: the model's config names no corpus; give --corpus")
        corpus = Corpus.from_config(from_dict(DataConfig, run_data, prefix="data."))
    keep_other = run_data.get("keep_other", False) if keep_other is None else keep_other
    rows = split(prepare_labels(corpus, loaded.regions, keep_other=keep_other, progress=progress), split_name)
    return evaluate(predictor, rows, loaded.regions, split=split_name, progress=progress, intervals=intervals)


def evaluate_run(
    run: RunDir,
    split: str,
    *,
    corpus: Corpus | None = None,
    batch_size: int = 16,
    workers: int = 0,
    device: str = "cpu",
    precision: InferencePrecision = "fp32",
    progress: bool = False,
    intervals: Intervals | None = Intervals(),
) -> tuple[dict[str, Any], pd.DataFrame]:
    """The metrics and predictions of a run's best model on ``split`` (the rows of
    :meth:`RunDir.split_rows`, from ``corpus`` when it has moved): read from ``eval_<split>/`` when
    it is newer than the model, else evaluated and written there."""
    if corpus is None and (known := run.evaluation(split)) is not None:
        return known
    if not run.model_dir.exists():
        raise UserError(f"{run.path}: no model to evaluate split {split!r} with (the run did not finish training?)")
    predictor = load_predictor(
        run.model_dir, Options(batch_size=batch_size, workers=workers), device=device, precision=precision
    )
    rows = run.split_rows(split, corpus)
    regions = run.config().model.region_set()
    metrics, predictions = evaluate(predictor, rows, regions, split=split, progress=progress, intervals=intervals)
    write_evaluation(metrics, predictions, run.eval_dir(split))
    return metrics, predictions
