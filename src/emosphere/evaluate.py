"""Evaluation of a trained model on a labelled split: metrics over the whole
split and predictions in the challenge format.

Each file is predicted through the engine
(:mod:`emosphere.engine`: windows, batches, clipped duration-weighted
aggregation), so ``emosphere evaluate``, ``emosphere predict`` and training's
development pass give the same value for the same file; :func:`score` turns
file-level predictions into the metrics for both this module and training."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import InferencePrecision
from .engine import Failure, Options, Prediction, Predictor, file_values
from .errors import UserError
from .io import write_table, write_text_atomic
from .labels import LABEL_COLUMNS, Corpus, LabelError
from .load import load_predictor
from .metrics import region_metrics, regression_metrics
from .rundir import RunDir
from .schema import describe
from .sphere import DIMENSIONS, RegionSet, from_unit

CHALLENGE_COLUMNS = ("FileName", "EmoAct", "EmoVal", "EmoDom")


def score(
    table: pd.DataFrame, avd_unit: np.ndarray, region_probs: np.ndarray | None, regions: RegionSet, *, split: str
) -> dict[str, Any]:
    """Metrics of file-level predictions (``avd_unit`` (n, 3) on [0, 1], ``region_probs`` (n, K) or
    None; see :func:`emosphere.engine.aggregate`) against the rows of a prepared label ``table``
    in the same order. CCC on the 1-7 scale over all rows; region accuracy, macro-F1 and UAR from
    the region head when there is one, else from the region of the predicted point
    (``region.source`` says which)."""
    predicted = from_unit(avd_unit)
    if region_probs is not None:
        region_pred, source = region_probs.argmax(1), "classifier"
    else:
        region_pred, source = regions.assign(predicted), "regression"
    return {
        "split": split,
        "n": len(table),
        "ccc": regression_metrics(predicted, table[list(LABEL_COLUMNS)].to_numpy(np.float64)),
        "region": {
            **region_metrics(region_pred, table["region"].to_numpy(), regions.num_classes),
            "source": source,
            "region_set": regions.name,
        },
        "scale": "CCC on the 1-7 scale",
    }


def evaluate(
    predictor: Predictor, table: pd.DataFrame, regions: RegionSet, *, split: str, progress: bool = False
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Metrics (:func:`score`, in the region set the ``table`` was prepared with) and a prediction
    table for the rows of a prepared label ``table`` (one split), each file predicted by
    ``predictor`` as ``emosphere predict`` predicts it. Files that cannot be predicted (unreadable,
    too short) are left out of the metrics and listed in ``metrics["skipped"]``; if none can be
    predicted, :class:`LabelError`."""
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
    metrics = {**score(rows, avd, probs, regions, split=split), "skipped": skipped}
    described = describe(avd, probs, predictor.region_names, predictor.regions, [p.silent for p in predicted])
    predictions = pd.concat([rows[["FileName"]], described], axis=1)
    predictions[["EmoAct", "EmoVal", "EmoDom"]] = described[list(DIMENSIONS)].to_numpy()
    predictions[[f"true_{c}" for c in LABEL_COLUMNS]] = rows[list(LABEL_COLUMNS)].to_numpy(np.float64)
    predictions["true_region"] = rows["region_name"].to_numpy()
    return metrics, predictions


def write_evaluation(metrics: dict[str, Any], predictions: pd.DataFrame, output_dir: str | os.PathLike) -> Path:
    """``metrics.json``, ``predictions.csv`` (challenge format: FileName,EmoAct,EmoVal,EmoDom on 1-7)
    and ``predictions_full.csv`` (every column of :func:`emosphere.schema.describe` plus the labels)."""
    output_dir = Path(output_dir)
    write_text_atomic(output_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    write_table(predictions[list(CHALLENGE_COLUMNS)], output_dir / "predictions.csv")
    write_table(predictions, output_dir / "predictions_full.csv")
    return output_dir


def format_metrics(metrics: dict[str, Any]) -> str:
    """A short human-readable summary."""
    ccc, region = metrics["ccc"], metrics["region"]
    skipped = metrics.get("skipped")
    return (
        f"{metrics['split']} (n={metrics['n']}): CCC arousal {ccc['arousal']:.3f}  valence {ccc['valence']:.3f}  "
        f"dominance {ccc['dominance']:.3f}  mean {ccc['mean']:.3f} | region ({region['source']}) "
        f"accuracy {region['accuracy']:.3f}  macro-F1 {region['macro_f1']:.3f}  UAR {region['uar']:.3f}"
        + (f" | {len(skipped)} file(s) skipped" if skipped else "")
    )


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
    metrics, predictions = evaluate(predictor, rows, run.config().model.region_set(), split=split, progress=progress)
    write_evaluation(metrics, predictions, run.eval_dir(split))
    return metrics, predictions
