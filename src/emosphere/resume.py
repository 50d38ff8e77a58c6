"""Exact resume on top of Lightning's checkpoints: what they leave out, and writes that an
interruption cannot corrupt.

* :class:`RandomState`: every process's random state (dropout, masking) in each
  checkpoint, restored on resume;
* :class:`AtomicCheckpointIO`: checkpoints written beside their final name,
  flushed and renamed over it;
* :func:`checkpoint_callbacks`: the best checkpoint by the development mean
  CCC, and ``last.ckpt`` at each epoch's end and every N optimiser steps.

The position within an epoch is the data module's
(:class:`emosphere.train.EmoSphereData`): the batch order depends only on the
seed and the epoch, so a resumed epoch skips the batches already trained on.
"""

from __future__ import annotations

import random
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from .io import atomic_path

MONITOR = "dev/ccc_mean"
"""The metric the best checkpoint (and so the saved model) is chosen by."""


def checkpoint_callbacks(folder: Path, every_n_steps: int) -> list[ModelCheckpoint]:
    """The best checkpoint, and ``last.ckpt`` for ``--resume``: after each epoch's development pass
    and, with ``every_n_steps``, every that many optimiser steps. (Lightning's save_last skips epochs
    that bring no new best.) No -v1 copies of an earlier run's files."""
    best = ModelCheckpoint(
        dirpath=folder,
        filename="best-{epoch:02d}",
        monitor=MONITOR,
        mode="max",
        save_top_k=1,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    callbacks = [best, ModelCheckpoint(dirpath=folder, filename="last", enable_version_counter=False)]
    if every_n_steps:
        callbacks.append(
            ModelCheckpoint(dirpath=folder, filename="last", enable_version_counter=False,
                            every_n_train_steps=every_n_steps)
        )  # fmt: skip
    return callbacks


class RandomState(Callback):
    """Every process's random state (dropout, SpecAugment masking) in each checkpoint, restored on resume."""

    def on_save_checkpoint(self, trainer: L.Trainer, task: L.LightningModule, checkpoint: dict) -> None:
        numpy = np.random.get_state()
        state = {
            "python": random.getstate(),
            "torch": torch.get_rng_state(),
            "numpy": (numpy[0], torch.from_numpy(numpy[1].astype(np.int64)), *numpy[2:]),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state()
        states = [state]
        if trainer.world_size > 1:  # every process saves together; the first one writes the file
            states = [None] * trainer.world_size
            torch.distributed.all_gather_object(states, state)
        checkpoint["random_state"] = states

    def on_load_checkpoint(self, trainer: L.Trainer, task: L.LightningModule, checkpoint: dict) -> None:
        states = checkpoint.get("random_state", [])
        if len(states) != trainer.world_size:
            return
        state = states[trainer.global_rank]
        random.setstate(state["python"])
        name, keys, *rest = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state(state["cuda"])


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written through :func:`io.atomic_path` (beside their final name, flushed to disk,
    renamed over it): a save interrupted at any moment leaves the previous checkpoint whole.
    (Lightning's own writer stages the file in the system's temporary folder; moving it to another
    file system is a copy, not a rename.)"""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)
