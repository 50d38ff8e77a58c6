"""Training on PyTorch Lightning.

Lightning owns the loop, mixed precision, gradient accumulation, DDP,
checkpoints, resume and logging; this module supplies the objective
(:mod:`emosphere.losses`), the data and model selection by the best mean CCC
on the development split. A run directory holds:

* ``config.yaml``: the run's full config;
* ``labels.csv``: the prepared label table;
* ``audio_stats.json``: normalisation statistics of the training audio;
* ``checkpoints/``: Lightning checkpoints (``last.ckpt`` for ``--resume``, and the best);
* ``logs/version_N/metrics.csv``: metrics per step and epoch, one folder per start or resume;
* ``model/``: the best model as a model directory (see :mod:`emosphere.model`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torchmetrics import CatMetric

from . import data
from .audio import AudioStats
from .config import RunConfig
from .io import write_table
from .labels import Corpus, prepare_labels, split
from .losses import aux_weight, ccc, ccc_loss, region_loss
from .metrics import region_metrics
from .model import EmoSphereSER
from .sphere import DIMENSIONS

log = logging.getLogger(__name__)

MONITOR = "dev/ccc_mean"


class EmoSphereTask(L.LightningModule):
    """The objective ``L_ccc + w(epoch) * L_aux`` and its development metrics."""

    def __init__(self, model: EmoSphereSER, config: RunConfig, class_weights: np.ndarray | None) -> None:
        super().__init__()
        self.model = model
        self.config = config
        weights = torch.as_tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
        self.register_buffer("class_weights", weights, persistent=False)
        self.dev_avd, self.dev_target = CatMetric(), CatMetric()
        self.dev_region, self.dev_logits = CatMetric(), CatMetric()

    @property
    def aux_weight(self) -> float:
        if self.model.region_head is None:
            return 0.0
        return aux_weight(self.current_epoch, self.config.objective)

    def training_step(self, batch: data.Batch, batch_index: int) -> torch.Tensor:
        weight = self.aux_weight
        out = self.model(batch.waveform, batch.lengths)
        loss_ccc = ccc_loss(out.avd, batch.avd)
        loss = loss_ccc
        if weight > 0:
            loss_aux = region_loss(out.region_logits, batch.region, self.class_weights)
            loss = loss + weight * loss_aux
            self.log("train/aux_loss", loss_aux, batch_size=len(batch.lengths))
        size = len(batch.lengths)
        self.log("train/ccc_loss", loss_ccc, batch_size=size, on_step=True, on_epoch=True)
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log("train/aux_weight", weight, batch_size=size)
        return loss

    def validation_step(self, batch: data.Batch, batch_index: int) -> None:
        out = self.model(batch.waveform, batch.lengths)
        self.dev_avd.update(out.avd.float())
        self.dev_target.update(batch.avd)
        if out.region_logits is not None:
            self.dev_region.update(batch.region)
            self.dev_logits.update(out.region_logits.float())

    def on_validation_epoch_end(self) -> None:
        avd, target = self.dev_avd.compute(), self.dev_target.compute()
        values = ccc(avd, target)
        metrics = {f"dev/ccc_{name}": values[i] for i, name in enumerate(DIMENSIONS)}
        metrics[MONITOR] = values.mean()
        metrics["dev/ccc_loss"] = (1 - values).sum()
        if self.model.region_head is not None:
            labels, logits = self.dev_region.compute().long(), self.dev_logits.compute()
            metrics["dev/aux_loss"] = region_loss(logits, labels, self.class_weights)
            scores = region_metrics(logits.argmax(1).cpu().numpy(), labels.cpu().numpy(), logits.shape[1])
            metrics.update({f"dev/region_{k}": float(v) for k, v in scores.items()})
            self.dev_region.reset()
            self.dev_logits.reset()
        self.log_dict(metrics, prog_bar=False)
        self.dev_avd.reset()
        self.dev_target.reset()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        return torch.optim.AdamW(parameters, lr=self.config.optim.lr, weight_decay=self.config.optim.weight_decay)


class EmoSphereData(L.LightningDataModule):
    """Train and development loaders over the prepared table; each process takes its share of batches."""

    def __init__(self, table: pd.DataFrame, config: RunConfig, min_samples: int) -> None:
        super().__init__()
        self.config = config
        self.train_rows = split(table, config.data.train_split)
        self.dev_rows = split(table, config.data.dev_split)
        self.min_samples = min_samples

    def _loader(self, rows: pd.DataFrame, train: bool):
        cfg = self.config.data
        return data.loader(
            rows, batch_size=cfg.batch_size, shuffle=train, max_seconds=cfg.max_seconds if train else None,
            bucket=cfg.bucket_by_length, num_workers=cfg.num_workers, seed=self.config.trainer.seed,
            num_replicas=self.trainer.world_size, rank=self.trainer.global_rank, min_samples=self.min_samples,
        )

    def train_dataloader(self):
        return self._loader(self.train_rows, train=True)

    def val_dataloader(self):
        return self._loader(self.dev_rows, train=False)


def _devices(value: str) -> int | list[int] | str:
    if value.isdigit():
        return int(value)
    if "," in value:
        return [int(v) for v in value.split(",") if v.strip()]
    return value


def build_trainer(config: RunConfig, run_dir: Path) -> L.Trainer:
    t = config.trainer
    precision = t.precision
    if precision == "auto":
        precision = "16-mixed" if torch.cuda.is_available() and t.accelerator in ("auto", "gpu", "cuda") else "32-true"
    strategy = t.strategy
    if strategy == "ddp":
        # The region head stops receiving gradients when the auxiliary task switches off,
        # and WavLM's layerdrop skips layers: DDP must expect unused parameters.
        strategy = "ddp_find_unused_parameters_true"
    checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best-{epoch:02d}", monitor=MONITOR,
                                 mode="max", save_top_k=1, save_last=True, auto_insert_metric_name=False)
    return L.Trainer(
        max_epochs=t.max_epochs, accelerator=t.accelerator, devices=_devices(t.devices), strategy=strategy,
        num_nodes=t.num_nodes, precision=precision, accumulate_grad_batches=config.optim.accumulate_grad_batches,
        gradient_clip_val=config.optim.gradient_clip_val or None, callbacks=[checkpoint],
        logger=CSVLogger(run_dir, name="logs"), log_every_n_steps=t.log_every_n_steps,
        enable_progress_bar=t.progress, use_distributed_sampler=False, num_sanity_val_steps=0,
    )


def train(config: RunConfig, *, resume: bool = False) -> Path:
    """Train as ``config`` says; returns the model directory of the best development checkpoint."""
    run_dir = Path(config.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(config.trainer.seed, workers=True)
    config.save(run_dir / "config.yaml")
    cfg = config.data
    if not cfg.corpus and not cfg.labels:
        raise ValueError("data.corpus is not set: point it at a folder with Audios/ and Labels/labels_consensus.csv")
    model = EmoSphereSER.build(config.model, region_head=config.objective.aux_schedule != "none")
    table = prepare_labels(Corpus.at(cfg.corpus, cfg.labels, cfg.audio_dir), model.regions,
                           keep_other=cfg.keep_other, progress=config.trainer.progress)
    write_table(table, run_dir / "labels.csv")
    train_rows = split(table, cfg.train_split)
    stats_path = run_dir / "audio_stats.json"
    if stats_path.is_file():
        stats = AudioStats.load(stats_path)
    else:
        stats = data.measure_stats(train_rows, max_files=cfg.stats_max_files,
                                   seed=config.trainer.seed, num_workers=cfg.num_workers,
                                   progress=config.trainer.progress)
        stats.save(stats_path)
    model.set_stats(stats)
    model.run_config = config.to_dict()
    weights = model.regions.class_weights(train_rows["region"]) if config.objective.class_weights else None
    task = EmoSphereTask(model, config, weights)
    trainer = build_trainer(config, run_dir)
    if isinstance(trainer.accelerator, CPUAccelerator):
        # Leave a core to each data-loading worker: oversubscribed OpenMP threads make
        # every small op wait for a descheduled thread (10x slower seen on 2 cores).
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - cfg.num_workers))
    last = run_dir / "checkpoints" / "last.ckpt"
    if resume and not last.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {last}")
    trainer.fit(task, datamodule=EmoSphereData(table, config, model.min_samples),
                ckpt_path=str(last) if resume else None)
    best = trainer.checkpoint_callback.best_model_path
    if best:
        state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        task.load_state_dict(state)
    model_dir = run_dir / "model"
    if trainer.is_global_zero:
        model.cpu().save_pretrained(model_dir)
        log.info("best %s = %.4f; model saved to %s", MONITOR,
                 float(trainer.checkpoint_callback.best_model_score or float("nan")), model_dir)
    return model_dir
