"""Training objective: CCC loss on A/V/D plus the dynamically weighted auxiliary
region loss, ``total = L_ccc + w(epoch) * L_aux``.

The paper's schedule (:func:`aux_weight` with the defaults) decays the
auxiliary weight linearly over the first 5 epochs, w(e) = 1 - (e / 5) * 0.99:
1.0, 0.802, 0.604, 0.406, 0.208; from epoch 5 on the auxiliary loss is off.
"""

from __future__ import annotations

import typing

import torch
import torch.nn.functional as F

from .config import AuxSchedule, ObjectiveConfig

AUX_SCHEDULES = typing.get_args(AuxSchedule)


def ccc(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Concordance correlation coefficient of each column of (n, d) tensors, population variances."""
    pred, target = pred.float(), target.float()
    pred_mean, target_mean = pred.mean(0), target.mean(0)
    covariance = ((pred - pred_mean) * (target - target_mean)).mean(0)
    denominator = pred.var(0, unbiased=False) + target.var(0, unbiased=False) + (pred_mean - target_mean) ** 2
    return 2 * covariance / (denominator + eps)


def ccc_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum over the dimensions of 1 - CCC, on one batch."""
    return (1 - ccc(pred, target)).sum()


def region_loss(logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor | None) -> torch.Tensor:
    """Class-weighted cross-entropy on the region labels."""
    return F.cross_entropy(logits.float(), labels, weight=class_weights)


def aux_weight(epoch: int, config: ObjectiveConfig) -> float:
    """Weight of the auxiliary loss in ``epoch`` (0-based); 0 means the auxiliary task is off."""
    if config.aux_schedule == "none":
        return 0.0
    if config.aux_schedule == "constant":
        return config.aux_start
    if config.aux_schedule == "linear":
        if epoch >= config.aux_decay_epochs:
            return 0.0
        return config.aux_start + (config.aux_end - config.aux_start) * epoch / config.aux_decay_epochs
    raise ValueError(f"unknown aux_schedule {config.aux_schedule!r}; choose one of {AUX_SCHEDULES}")
