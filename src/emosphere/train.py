"""Training on PyTorch Lightning.

Lightning owns the loop, mixed precision, gradient accumulation, DDP,
checkpoints, resume and logging; this module supplies the objective
(:mod:`emosphere.losses`), the data and model selection by the best mean CCC
on the development split, and what Lightning's checkpoints leave out for an
exact resume: the position within the epoch (:class:`EmoSphereData`), and
(:mod:`emosphere.resume`) every process's random state and writes that an
interruption cannot corrupt. What a run writes, and where, is
:class:`emosphere.rundir.RunDir`'s. The development pass predicts each file
as the engine does (:class:`emosphere.engine.Windowing` cuts and batches,
:func:`emosphere.engine.assemble` puts the windows back together), so it
scores what ``emosphere evaluate`` scores.
"""

from __future__ import annotations

import logging
import os
import signal
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException
from torch.utils.data import DataLoader
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from . import data
from .audio import SAMPLE_RATE, AudioStats
from .config import ConfigError, RunConfig
from .engine import Options, Windowing, assemble, file_values, softmax
from .errors import first_line
from .evaluate import score
from .io import write_table
from .labels import LabelError, split
from .losses import aux_weight, ccc_loss, region_loss
from .model import EmoSphereSER
from .preflight import preflight
from .resume import MONITOR, AtomicCheckpointIO, RandomState, checkpoint_callbacks
from .rundir import RunDir
from .sphere import DIMENSIONS

log = logging.getLogger(__name__)


class WindowOutputs(Metric):
    """The development pass's outputs per window, gathered from every process by ``compute()``."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("owner", "spans", "avd", "logits"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, owner: torch.Tensor, spans: torch.Tensor, avd: torch.Tensor, logits: torch.Tensor | None) -> None:
        self.owner.append(owner)
        self.spans.append(spans)
        self.avd.append(avd.float())
        if logits is not None:
            self.logits.append(logits.float())

    def compute(self) -> dict[str, np.ndarray | None]:
        return {
            name: dim_zero_cat(getattr(self, name)).cpu().numpy() if len(getattr(self, name)) else None
            for name in ("owner", "spans", "avd", "logits")
        }


class EmoSphereTask(L.LightningModule):
    """The objective ``L_ccc + w(epoch) * L_aux``, and the development metrics of
    :func:`emosphere.evaluate.score` over the files of ``dev_rows``, predicted through the
    inference core (windows, clipping, aggregation) as ``emosphere evaluate`` predicts them."""

    def __init__(
        self, model: EmoSphereSER, config: RunConfig, class_weights: np.ndarray | None, dev_rows: pd.DataFrame
    ) -> None:
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
        # The CCC loss is a per-batch statistic: each accumulation micro-batch loaded into this
        # batch (trainer.micro_batches_per_step) keeps its own loss. Their sum over the configured
        # count, with Lightning accumulating that many fewer steps, is the gradient of the plain loop.
        groups = (
            [slice(None)]
            if batch.micro_batch is None
            else [batch.micro_batch == g for g in range(int(batch.micro_batch.max()) + 1)]
        )
        loss_ccc = torch.stack([ccc_loss(out.avd[g], batch.avd[g]) for g in groups])
        loss = loss_ccc
        if weight > 0:
            loss_aux = torch.stack(
                [region_loss(out.region_logits[g], batch.region[g], self.class_weights) for g in groups]
            )
            loss = loss + weight * loss_aux
            self.log("train/aux_loss", loss_aux.mean(), batch_size=len(batch.lengths))
        size = len(batch.lengths)
        self.log("train/ccc_loss", loss_ccc.mean(), batch_size=size, on_step=True, on_epoch=True)
        self.log("train/loss", loss.mean(), prog_bar=True, batch_size=size)
        self.log("train/aux_weight", weight, batch_size=size)
        return loss.sum() / self.config.trainer.micro_batches_per_step

    def on_train_epoch_start(self) -> None:
        # Lightning sets the epoch of a loader's sampler, not of its batch sampler: a new order each epoch.
        self.trainer.train_dataloader.batch_sampler.set_epoch(self.current_epoch)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> None:
        out = self.model(batch["waveform"], batch["lengths"])
        self.dev_windows.update(batch["owner"], batch["spans"], out.avd, out.region_logits)

    def on_validation_epoch_end(self) -> None:
        windows = self.dev_windows.compute()
        self.dev_windows.reset()
        if windows["owner"] is None:
            raise LabelError(
                f"split {self.config.data.dev_split!r}: no file could be predicted for the "
                "development metrics (see the warnings above)"
            )
        probs = None if windows["logits"] is None else softmax(windows["logits"].astype(np.float64))
        predictions = assemble(windows["owner"], windows["spans"], windows["avd"], probs, self.dev_rows["path"])
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
    """Train and development loaders over the prepared table; each process takes its share of batches.

    Checkpoints record where training stands (the epoch and the batches of it each process has
    trained on); the training loader of a resumed run starts there.
    """

    def __init__(self, table: pd.DataFrame, config: RunConfig, min_samples: int) -> None:
        super().__init__()
        self.config = config
        self.train_rows = split(table, config.data.train_split)
        self.dev_rows = split(table, config.data.dev_split)
        self.min_samples = min_samples
        self.position = {"epoch": 0, "batches": 0}

    def state_dict(self) -> dict:
        trainer = self.trainer
        epoch, batches = trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if batches >= trainer.num_training_batches:  # saved at the epoch's end: the next one starts afresh
            epoch, batches = epoch + 1, 0
        return {"epoch": epoch, "batches": batches, "processes": trainer.world_size, **self._batch_order()}

    def _batch_order(self) -> dict[str, Any]:
        """The settings an epoch's batches depend on (beside the number of processes)."""
        c = self.config
        return {
            "data.batch_size": c.data.batch_size,
            "data.bucket_by_length": c.data.bucket_by_length,
            "data.max_seconds": c.data.max_seconds,
            "trainer.seed": c.trainer.seed,
            "trainer.micro_batches_per_step": c.trainer.micro_batches_per_step,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["batches"]:  # mid-epoch: the rest of the epoch is found by skipping the batches done
            if state["processes"] != self.trainer.world_size:
                raise ConfigError(
                    f"the checkpoint stopped mid-epoch in a run of {state['processes']} processes; "
                    f"resume it with as many (trainer.devices x trainer.num_nodes), not "
                    f"{self.trainer.world_size}"
                )
            for key, value in self._batch_order().items():
                if state[key] != value:
                    raise ConfigError(
                        f"{key}: the checkpoint stopped mid-epoch with {state[key]!r}; resume it "
                        f"with the same value, not {value!r} (the rest of its epoch depends on it)"
                    )
        self.position = {"epoch": state["epoch"], "batches": state["batches"]}

    def train_dataloader(self):
        cfg = self.config.data
        loader = data.loader(
            self.train_rows,
            batch_size=cfg.batch_size,
            max_seconds=cfg.max_seconds,
            bucket=cfg.bucket_by_length,
            num_workers=cfg.num_workers,
            seed=self.config.trainer.seed,
            num_replicas=self.trainer.world_size,
            rank=self.trainer.global_rank,
            min_samples=self.min_samples,
            micro_batches=self.config.trainer.micro_batches_per_step,
        )
        # Lightning draws the first epoch's batches before it calls set_epoch: set the epoch here.
        loader.batch_sampler.resume(self.position["epoch"], self.position["batches"])
        return loader

    def val_dataloader(self):
        windowing = Windowing(Options(batch_size=self.config.data.batch_size), self.min_samples,
                              self.config.data.max_seconds)  # fmt: skip
        windows = data.InferenceWindows(
            self.dev_rows["path"].tolist(),
            windowing,
            num_replicas=self.trainer.world_size,
            rank=self.trainer.global_rank,
        )
        workers = self.config.data.num_workers
        return DataLoader(
            windows,
            batch_size=None,
            num_workers=workers,
            persistent_workers=workers > 0,
            generator=torch.Generator().manual_seed(self.config.trainer.seed),
        )  # see data.loader


def _devices(value: str) -> int | list[int] | str:
    if value.isdigit():
        return int(value)
    if "," in value:
        return [int(v) for v in value.split(",") if v.strip()]
    return value


class _NoAdverts(logging.Filter):
    """Drops Lightning's "Tip: ... try installing ..." lines, which advertise its cloud services."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip: " not in record.getMessage()


NO_ADVERTS = _NoAdverts()


def build_trainer(config: RunConfig, run: RunDir) -> L.Trainer:
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(NO_ADVERTS)
    t = config.trainer
    precision = t.precision
    if precision == "auto":
        precision = "16-mixed" if torch.cuda.is_available() and t.accelerator in ("auto", "gpu", "cuda") else "32-true"
    strategy = t.strategy
    if strategy == "ddp":
        # The region head stops receiving gradients when the auxiliary task switches off,
        # and WavLM's layerdrop skips layers: DDP must expect unused parameters.
        strategy = "ddp_find_unused_parameters_true"
    return L.Trainer(
        max_epochs=t.max_epochs,
        accelerator=t.accelerator,
        devices=_devices(t.devices),
        strategy=strategy,
        num_nodes=t.num_nodes,
        precision=precision,
        accumulate_grad_batches=config.optim.accumulate_grad_batches // t.micro_batches_per_step,
        gradient_clip_val=config.optim.gradient_clip_val or None,
        callbacks=[*checkpoint_callbacks(run.checkpoints, t.checkpoint_every_n_steps), RandomState()],
        plugins=[AtomicCheckpointIO()],
        default_root_dir=run.path,
        logger=[
            CSVLogger(run.path, name="logs"),
            TensorBoardLogger(run.path, name="tensorboard", default_hp_metric=False),
        ],
        log_every_n_steps=t.log_every_n_steps,
        enable_progress_bar=t.progress,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
    )


def train(config: RunConfig, *, resume: bool = False) -> Path | None:
    """Train as ``config`` says; returns the model directory of the best development checkpoint
    (None in the other processes of a multi-process run: the first one writes it). The run
    directory records the config with its paths absolute (:meth:`RunConfig.resolved`)."""
    report = preflight(config, resume=resume)  # raises before anything is written
    report.raise_for_errors()
    config = config.resolved()
    run = RunDir(config.output_dir)
    try:
        trainer = build_trainer(config, run)
    except (MisconfigurationException, ValueError, TypeError) as error:
        raise ConfigError(f"trainer: Lightning rejects these settings ({first_line(error)})") from error
    L.seed_everything(config.trainer.seed, workers=True)
    model = EmoSphereSER.build(config.model, region_head=config.objective.aux_schedule != "none")
    run.path.mkdir(parents=True, exist_ok=True)
    config.save(run.config_file)
    write_table(report.prepared, run.labels_file)
    datamodule = EmoSphereData(report.prepared, config, model.min_samples)
    model.set_stats(_audio_stats(run, config, datamodule.train_rows))
    model.run_config = config.to_dict()
    train_regions = datamodule.train_rows["region"]
    weights = model.regions.class_weights(train_regions) if config.objective.class_weights else None
    if config.trainer.compile:
        model.encoder.compile_training(round(config.data.max_seconds * SAMPLE_RATE))
    task = EmoSphereTask(model, config, weights, datamodule.dev_rows)
    if isinstance(trainer.accelerator, CPUAccelerator):
        # Share the cores among this machine's processes, leaving one to each data-loading worker:
        # oversubscribed OpenMP threads make every small op wait for a descheduled thread (10x slower
        # seen on 2 cores).
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // trainer.num_devices - config.data.num_workers))
    _fit(trainer, task, datamodule, run, resume)
    if not trainer.is_global_zero:  # rank 0 alone loads the best checkpoint and saves the model
        return None
    best = trainer.checkpoint_callback.best_model_path
    if best:
        task.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["state_dict"])
    model.cpu().save_pretrained(run.model_dir)
    score = float(trainer.checkpoint_callback.best_model_score or float("nan"))
    log.info("best %s = %.4f; model saved to %s", MONITOR, score, run.model_dir)
    return run.model_dir


def _audio_stats(run: RunDir, config: RunConfig, train_rows: pd.DataFrame) -> AudioStats:
    """The run's normalisation statistics: measured over the training audio once, then read."""
    if run.stats_file.is_file():
        return AudioStats.load(run.stats_file)
    cfg = config.data
    stats = data.measure_stats(
        train_rows,
        max_files=cfg.stats_max_files,
        seed=config.trainer.seed,
        num_workers=cfg.num_workers,
        progress=config.trainer.progress,
    )
    stats.save(run.stats_file)
    return stats


def _fit(trainer: L.Trainer, task: EmoSphereTask, datamodule: EmoSphereData, run: RunDir, resume: bool) -> None:
    """``trainer.fit``, from ``last.ckpt`` when resuming; SIGTERM exits 143 (SLURM requeues)."""
    for unfinished in run.checkpoints.glob(".*.tmp"):  # left by a save that a kill interrupted
        unfinished.unlink(missing_ok=True)
    try:
        with warnings.catch_warnings():
            # Lightning looks for the position within the epoch in the loader; EmoSphereData restores it.
            warnings.filterwarnings("ignore", "You're resuming from a checkpoint that ended before the epoch ended")
            trainer.fit(task, datamodule=datamodule, ckpt_path=str(run.last_checkpoint) if resume else None)
    except SIGTERMException:  # Lightning stopped after the current batch; fail as the killed process it is
        log.error(
            "stopped by SIGTERM at step %d; continue with --resume from %s", trainer.global_step, run.last_checkpoint
        )
        raise SystemExit(128 + signal.SIGTERM) from None
