"""Inference: batched forward passes and the tables users read.

Every output table names its columns and states its scale:

* ``arousal``, ``valence``, ``dominance``: the 1-7 scale of MSP-Podcast, clipped;
* ``arousal_unit``, ``valence_unit``, ``dominance_unit``: the same on [0, 1];
* ``r``, ``theta``, ``phi``: the centred point in spherical coordinates
  (r >= 0; theta in [0, pi] and phi in (-pi, pi], radians);
* ``region`` (the predicted region's name) and ``p_<region>`` (its
  probabilities), when the model has a region head.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch

from .data import Batch
from .model import EmoSphereSER
from .sphere import DIMENSIONS, centre, from_unit, to_spherical, to_unit


@torch.inference_mode()
def infer(model: EmoSphereSER, batches: Iterable[Batch], device: torch.device | str = "cpu") -> dict[str, np.ndarray]:
    """Run ``model`` over ``batches``; returns ``index``, ``avd`` (n, 3) on [0, 1] as predicted
    and ``region_probs`` (n, K) or None, in the order of ``index``."""
    model.eval()
    indices, avd, probs = [], [], []
    for batch in batches:
        batch = batch.to(device)
        out = model(batch.waveform, batch.lengths)
        indices.append(batch.index.cpu().numpy())
        avd.append(out.avd.float().cpu().numpy())
        if out.region_logits is not None:
            probs.append(torch.softmax(out.region_logits.float(), -1).cpu().numpy())
    if not indices:
        return {"index": np.zeros(0, np.int64), "avd": np.zeros((0, 3)), "region_probs": None}
    order = np.argsort(np.concatenate(indices), kind="stable")
    return {
        "index": np.concatenate(indices)[order],
        "avd": np.concatenate(avd)[order],
        "region_probs": np.concatenate(probs)[order] if probs else None,
    }


def describe(avd_unit: np.ndarray, region_probs: np.ndarray | None, region_names: list[str]) -> pd.DataFrame:
    """The named output columns (see the module docstring) for (n, 3) predictions on [0, 1]."""
    scaled = from_unit(avd_unit)
    table = pd.DataFrame(scaled, columns=list(DIMENSIONS))
    table[[f"{d}_unit" for d in DIMENSIONS]] = to_unit(scaled)
    table[["r", "theta", "phi"]] = to_spherical(centre(scaled))
    if region_probs is not None:
        table["region"] = np.asarray(region_names)[region_probs.argmax(1)]
        table[[f"p_{name}" for name in region_names]] = region_probs
    return table
