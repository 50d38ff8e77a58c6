"""Data for training: audio streamed from disk, padded batches, length
bucketing, and the development split's windows.

Nothing is decoded up front: each item reads its file when the loader asks for
it. Batches are zero-padded and carry the valid lengths, which the model
masks, so padding never changes a prediction; bucketing only saves compute.
The development pass reads its files through the inference core
(:class:`InferenceWindows`), so that it scores what ``emosphere evaluate``
scores.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler, get_worker_info
from tqdm import tqdm

from . import audio
from .engine import Failure, Item, Windowing
from .sphere import DIMENSIONS

log = logging.getLogger(__name__)


@dataclass
class Batch:
    waveform: torch.Tensor
    """(batch, samples) raw 16 kHz audio, zero-padded."""
    lengths: torch.Tensor
    """(batch,) valid samples."""
    index: torch.Tensor
    """(batch,) row of each item in its table."""
    avd: torch.Tensor | None = None
    """(batch, 3) targets on [0, 1]."""
    region: torch.Tensor | None = None
    """(batch,) region labels."""
    micro_batch: torch.Tensor | None = None
    """(batch,) the accumulation micro-batch of each item, when several are loaded as one (see
    :class:`MicroBatchSampler`); each keeps its own per-batch loss."""

    def to(self, device: torch.device | str) -> Batch:
        return Batch(**{k: None if v is None else v.to(device) for k, v in vars(self).items()})


class UtteranceDataset(Dataset):
    """Rows of a prepared label table (``path``, targets, ``region``), read from disk on access.

    ``max_seconds`` keeps only the start of each file (the training crop).
    """

    def __init__(self, table: pd.DataFrame, max_seconds: float | None = None, min_samples: int = 0) -> None:
        self.paths = table["path"].tolist()
        self.max_seconds = max_seconds
        self.min_samples = min_samples
        self.avd = table[list(DIMENSIONS)].to_numpy(np.float32) if set(DIMENSIONS) <= set(table) else None
        self.region = table["region"].to_numpy(np.int64) if "region" in table else None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        path = self.paths[index]
        samples = audio.load(path, self.max_seconds)
        try:
            audio.check_length(samples, self.min_samples)
        except audio.AudioError as error:
            raise audio.AudioError(f"{path}: {error}") from None
        item = {"waveform": samples, "index": index}
        if self.avd is not None:
            item["avd"] = self.avd[index]
        if self.region is not None:
            item["region"] = self.region[index]
        return item


def collate(items: list[dict]) -> Batch:
    """Zero-pad waveforms to the longest in the batch."""
    lengths = torch.tensor([len(item["waveform"]) for item in items])
    waveform = torch.zeros(len(items), int(lengths.max()))
    for row, item in enumerate(items):
        waveform[row, : len(item["waveform"])] = torch.from_numpy(item["waveform"])
    batch = Batch(waveform, lengths, torch.tensor([item["index"] for item in items]))
    if "avd" in items[0]:
        batch.avd = torch.from_numpy(np.stack([item["avd"] for item in items]))
    if "region" in items[0]:
        batch.region = torch.tensor([item["region"] for item in items])
    return batch


def collate_micro_batches(groups: list[list[dict]]) -> Batch:
    """One padded batch of several micro-batches' items, each item tagged with its micro-batch."""
    batch = collate([item for group in groups for item in group])
    batch.micro_batch = torch.repeat_interleave(torch.arange(len(groups)), torch.tensor([len(g) for g in groups]))
    return batch


class MicroBatchSampler(Sampler[list[list[int]]]):
    """``count`` consecutive batches of ``batches`` at a time (fewer at the end of an epoch), so that
    several accumulation micro-batches are encoded together without changing any batch."""

    def __init__(self, batches: Sampler[list[int]], count: int) -> None:
        self.batches = batches
        self.count = count

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)

    def resume(self, epoch: int, steps: int) -> None:
        """:meth:`BucketBatchSampler.resume` after ``steps`` groups."""
        self.batches.resume(epoch, steps * self.count)

    def __iter__(self):
        batches = iter(self.batches)
        while group := list(itertools.islice(batches, self.count)):
            yield group

    def __len__(self) -> int:
        return math.ceil(len(self.batches) / self.count)


class _MicroBatches(Dataset):
    """Items of a list of batches (what :class:`MicroBatchSampler` yields)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, batch: list[int]) -> list[dict]:
        return [self.dataset[index] for index in batch]


class BucketBatchSampler(Sampler[list[int]]):
    """Training batches, of utterances of similar length with ``bucket`` (else random).

    Each epoch, a seeded permutation is cut into pools of ``pool_batches``
    batches (with ``bucket``; else one pool); each pool is sorted by length and
    cut into batches, and the batch order is shuffled. With several processes,
    process ``rank`` takes batches ``rank``, ``rank + num_replicas``, ...: one
    step of ``num_replicas`` processes trains on the same batches as
    ``num_replicas`` accumulated micro-batches of one process. The batch list is
    padded by repeating its first batches so that every process runs the same
    number of steps. (Inference batches windows itself: :mod:`emosphere.engine`.)

    :meth:`resume` continues an epoch where a checkpoint left it: the order
    depends only on ``seed`` and the epoch, so skipping the batches already
    trained on gives the rest of the interrupted epoch.
    """

    def __init__(
        self,
        lengths: np.ndarray,
        batch_size: int,
        *,
        bucket: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        pool_batches: int = 50,
    ) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.bucket = bucket
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.pool = batch_size * pool_batches
        self.epoch = 0
        self.resume_epoch, self.resume_batches = -1, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume(self, epoch: int, batches: int) -> None:
        """Start at ``epoch``; iterating over it skips this process's first ``batches`` batches.

        The length stays the whole epoch's: Lightning counts the skipped batches as done.
        """
        self.epoch, self.resume_epoch, self.resume_batches = epoch, epoch, batches

    def _batches(self) -> list[list[int]]:
        n = len(self.lengths)
        rng = np.random.default_rng(self.seed + self.epoch)
        order = rng.permutation(n)
        batches = []
        for start in range(0, n, self.pool if self.bucket else n):
            pool = order[start : start + (self.pool if self.bucket else n)]
            if self.bucket:
                pool = pool[np.argsort(-self.lengths[pool], kind="stable")]
            batches += [pool[i : i + self.batch_size].tolist() for i in range(0, len(pool), self.batch_size)]
        rng.shuffle(batches)
        if self.num_replicas > 1:
            total = math.ceil(len(batches) / self.num_replicas) * self.num_replicas
            batches += batches[: total - len(batches)]
        return batches

    def __iter__(self):
        start = self.resume_batches if self.epoch == self.resume_epoch else 0
        return iter(self._batches()[self.rank :: self.num_replicas][start:])

    def __len__(self) -> int:
        return len(self._batches()[self.rank :: self.num_replicas])


class InferenceWindows(IterableDataset):
    """The windows of ``paths``, decoded, cut and batched by ``windowing`` as the engine does it
    (:class:`emosphere.engine.Windowing`), as dicts of tensors: ``waveform``, ``lengths``,
    ``owner`` (the path's position in ``paths``) and ``spans``. Each of ``num_replicas`` processes
    takes every ``num_replicas``-th path from ``rank``, shared out again among its loader workers.
    Files that cannot be predicted are skipped with a warning."""

    def __init__(self, paths: list[str], windowing: Windowing, *, num_replicas: int = 1, rank: int = 0) -> None:
        self.paths = paths
        self.windowing = windowing
        self.num_replicas = num_replicas
        self.rank = rank

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        worker = get_worker_info()
        workers, worker_id = (worker.num_workers, worker.id) if worker is not None else (1, 0)
        mine = list(enumerate(self.paths))[self.rank :: self.num_replicas][worker_id::workers]
        for pool in self.windowing.pools(self.windowing.decode_all(mine)):
            for failed in (entry for entry in pool if isinstance(entry, Failure)):
                log.warning("development pass skips %s: %s", failed.name, failed.error)
            items = [entry for entry in pool if isinstance(entry, Item)]
            for batch in self.windowing.batches(items):
                yield {name: torch.from_numpy(value) for name, value in vars(batch).items()}


def loader(
    table: pd.DataFrame,
    *,
    batch_size: int,
    max_seconds: float | None = None,
    bucket: bool = True,
    num_workers: int = 0,
    seed: int = 0,
    num_replicas: int = 1,
    rank: int = 0,
    min_samples: int = 0,
    micro_batches: int = 1,
) -> DataLoader:
    """A training DataLoader over a prepared table, batched by :class:`BucketBatchSampler`;
    ``micro_batches`` > 1 loads that many batches as one (:class:`MicroBatchSampler`).

    Worker seeds come from the loader's own generator: starting an epoch leaves the global random
    stream (dropout, masking) where it was, so a resumed run finds it where the checkpoint left it.
    """
    durations = table["duration"].to_numpy(np.float64)
    if max_seconds is not None:
        durations = np.minimum(durations, max_seconds)
    sampler = BucketBatchSampler(durations, batch_size, bucket=bucket, seed=seed, num_replicas=num_replicas, rank=rank)
    dataset, collate_fn = UtteranceDataset(table, max_seconds, min_samples), collate
    if micro_batches > 1:
        sampler, dataset = MicroBatchSampler(sampler, micro_batches), _MicroBatches(dataset)
        collate_fn = collate_micro_batches
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate_fn,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )


def measure_stats(
    table: pd.DataFrame, *, max_files: int = 0, seed: int = 0, num_workers: int = 0, progress: bool = True
) -> audio.AudioStats:
    """Global mean and std of the audio samples of ``table`` (whole files), streamed from disk.

    ``max_files`` > 0 measures a seeded random subset of that many files.
    """
    if 0 < max_files < len(table):
        table = table.sample(n=max_files, random_state=seed)
    files = DataLoader(UtteranceDataset(table), batch_size=None, num_workers=num_workers)
    accumulator = audio.StatsAccumulator()
    for item in tqdm(files, total=len(table), desc="audio statistics", unit="file", disable=not progress):
        accumulator.add(np.asarray(item["waveform"]))
    return accumulator.result()
