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
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch.utils.data import DataLoader
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from . import data
from .audio import AudioStats
from .check import preflight
from .config import ConfigError, RunConfig
from .errors import first_line
from .evaluate import score
from .inference import file_values, group, softmax
from .io import write_table
from .labels import split
from .losses import aux_weight, ccc_loss, region_loss
from .model import EmoSphereSER
from .sphere import DIMENSIONS

log = logging.getLogger(__name__)

MONITOR = "dev/ccc_mean"


class WindowOutputs(Metric):
    """The development pass's outputs per window, gathered from every process by ``compute()``."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("owner", "spans", "avd", "logits"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, owner: torch.Tensor, spans: torch.Tensor, avd: torch.Tensor,
               logits: torch.Tensor | None) -> None:
        self.owner.append(owner)
        self.spans.append(spans)
        self.avd.append(avd.float())
        if logits is not None:
            self.logits.append(logits.float())

    def compute(self) -> dict[str, np.ndarray | None]:
        return {name: dim_zero_cat(getattr(self, name)).cpu().numpy() if len(getattr(self, name)) else None
                for name in ("owner", "spans", "avd", "logits")}


class EmoSphereTask(L.LightningModule):
    """The objective ``L_ccc + w(epoch) * L_aux``, and the development metrics of
    :func:`emosphere.evaluate.score` over the files of ``dev_rows``, predicted through the
    inference core (windows, clipping, aggregation) as ``emosphere evaluate`` predicts them."""

    def __init__(self, model: EmoSphereSER, config: RunConfig, class_weights: np.ndarray | None,
                 dev_rows: pd.DataFrame) -> None:
        super().__init__()
        self.model = model
        self.config = config
        weights = torch.as_tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
        self.register_buffer("class_weights", weights, persistent=False)
        self.dev_rows = dev_rows
        self.dev_windows = WindowOutputs()

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

    def validation_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> None:
        out = self.model(batch["waveform"], batch["lengths"])
        self.dev_windows.update(batch["owner"], batch["spans"], out.avd, out.region_logits)

    def on_validation_epoch_end(self) -> None:
        windows = self.dev_windows.compute()
        self.dev_windows.reset()
        probs = None if windows["logits"] is None else softmax(windows["logits"].astype(np.float64))
        predictions = group(windows["owner"], windows["spans"], windows["avd"], probs, self.dev_rows["path"])
        indices = sorted(predictions)
        avd, file_probs = file_values([predictions[i] for i in indices])
        rows = self.dev_rows.iloc[indices]
        scores = score(rows, avd, file_probs, self.model.regions, split=self.config.data.dev_split)
        ccc_values = scores["ccc"]
        metrics = {f"dev/ccc_{name}": ccc_values[name] for name in DIMENSIONS}
        metrics[MONITOR] = ccc_values["mean"]
        metrics["dev/ccc_loss"] = sum(1 - ccc_values[name] for name in DIMENSIONS)
        metrics.update({f"dev/region_{k}": scores["region"][k] for k in ("accuracy", "macro_f1", "uar")})
        metrics["dev/files_skipped"] = float(len(self.dev_rows) - len(indices))
        if file_probs is not None:  # log-probabilities are their own normalised logits
            log_probs = torch.from_numpy(np.log(np.maximum(file_probs, 1e-12)))
            weights = None if self.class_weights is None else self.class_weights.cpu()
            metrics["dev/aux_loss"] = float(region_loss(log_probs, torch.tensor(rows["region"].to_numpy()), weights))
        self.log_dict(metrics)

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

    def train_dataloader(self):
        cfg = self.config.data
        return data.loader(
            self.train_rows, batch_size=cfg.batch_size, shuffle=True, max_seconds=cfg.max_seconds,
            bucket=cfg.bucket_by_length, num_workers=cfg.num_workers, seed=self.config.trainer.seed,
            num_replicas=self.trainer.world_size, rank=self.trainer.global_rank, min_samples=self.min_samples,
        )

    def val_dataloader(self):
        windows = data.InferenceWindows(self.dev_rows["path"].tolist(), batch_size=self.config.data.batch_size,
                                        min_samples=self.min_samples, num_replicas=self.trainer.world_size,
                                        rank=self.trainer.global_rank)
        workers = self.config.data.num_workers
        return DataLoader(windows, batch_size=None, num_workers=workers, persistent_workers=workers > 0)


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
    report = preflight(config, resume=resume)  # raises before anything is written
    report.raise_for_errors()
    table = report.prepared
    run_dir = Path(config.output_dir)
    try:
        trainer = build_trainer(config, run_dir)
    except (MisconfigurationException, ValueError, TypeError) as error:
        raise ConfigError(f"trainer: Lightning rejects these settings ({first_line(error)})") from error
    L.seed_everything(config.trainer.seed, workers=True)
    model = EmoSphereSER.build(config.model, region_head=config.objective.aux_schedule != "none")
    run_dir.mkdir(parents=True, exist_ok=True)
    config.save(run_dir / "config.yaml")
    cfg = config.data
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
    datamodule = EmoSphereData(table, config, model.min_samples)
    task = EmoSphereTask(model, config, weights, datamodule.dev_rows)
    if isinstance(trainer.accelerator, CPUAccelerator):
        # Leave a core to each data-loading worker: oversubscribed OpenMP threads make
        # every small op wait for a descheduled thread (10x slower seen on 2 cores).
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - cfg.num_workers))
    last = run_dir / "checkpoints" / "last.ckpt"
    trainer.fit(task, datamodule=datamodule,
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
