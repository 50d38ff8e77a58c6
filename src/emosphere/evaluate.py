"""Evaluation of a trained model on a labelled split: metrics over the whole
split and predictions in the challenge format."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import data
from .io import write_table, write_text_atomic
from .labels import LABEL_COLUMNS
from .metrics import region_metrics, regression_metrics
from .model import EmoSphereSER
from .predict import describe, infer
from .sphere import from_unit

CHALLENGE_COLUMNS = ("FileName", "EmoAct", "EmoVal", "EmoDom")


def evaluate(model: EmoSphereSER, table: pd.DataFrame, *, split: str, batch_size: int = 16,
             num_workers: int = 0, device: str | torch.device = "cpu") -> tuple[dict[str, Any], pd.DataFrame]:
    """Metrics and a prediction table for the rows of a prepared label ``table`` (one split).

    CCC is computed on the 1-7 scale over the whole split. Region metrics use
    the region head's prediction when the model has one, else the region of
    the predicted A/V/D point; ``region.source`` says which.
    """
    batches = data.loader(table, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                          min_samples=model.min_samples)
    result = infer(model.to(device), batches, device)
    predicted = describe(result["avd"], result["region_probs"], model.region_names)
    truth = table[list(LABEL_COLUMNS)].to_numpy(np.float64)
    if result["region_probs"] is not None:
        region_pred, source = result["region_probs"].argmax(1), "classifier"
    else:
        region_pred, source = model.regions.assign(from_unit(result["avd"])), "regression"
    metrics = {
        "split": split,
        "n": int(len(table)),
        "ccc": regression_metrics(predicted[["arousal", "valence", "dominance"]].to_numpy(), truth),
        "region": {**region_metrics(region_pred, table["region"].to_numpy(), model.regions.num_classes),
                   "source": source, "region_set": model.regions.name},
        "scale": "CCC on the 1-7 scale",
    }
    predictions = pd.concat([table[["FileName"]].reset_index(drop=True), predicted], axis=1)
    predictions[["EmoAct", "EmoVal", "EmoDom"]] = predicted[["arousal", "valence", "dominance"]].to_numpy()
    predictions[[f"true_{c}" for c in LABEL_COLUMNS]] = truth
    predictions["true_region"] = table["region_name"].to_numpy()
    return metrics, predictions


def write_evaluation(metrics: dict[str, Any], predictions: pd.DataFrame, output_dir: str | os.PathLike) -> Path:
    """``metrics.json``, ``predictions.csv`` (challenge format: FileName,EmoAct,EmoVal,EmoDom on 1-7)
    and ``predictions_full.csv`` (every column of :func:`emosphere.predict.describe` plus the labels)."""
    output_dir = Path(output_dir)
    write_text_atomic(output_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    write_table(predictions[list(CHALLENGE_COLUMNS)], output_dir / "predictions.csv")
    write_table(predictions, output_dir / "predictions_full.csv")
    return output_dir


def format_metrics(metrics: dict[str, Any]) -> str:
    """A short human-readable summary."""
    ccc, region = metrics["ccc"], metrics["region"]
    return (
        f"{metrics['split']} (n={metrics['n']}): CCC arousal {ccc['arousal']:.3f}  valence {ccc['valence']:.3f}  "
        f"dominance {ccc['dominance']:.3f}  mean {ccc['mean']:.3f} | region ({region['source']}) "
        f"accuracy {region['accuracy']:.3f}  macro-F1 {region['macro_f1']:.3f}  UAR {region['uar']:.3f}"
    )
