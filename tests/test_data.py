import numpy as np

from emosphere import data
from emosphere.labels import Corpus, prepare_labels
from emosphere.sphere import RegionSet


def test_training_buckets_group_similar_lengths_and_reshuffle():
    lengths = np.random.default_rng(1).uniform(1, 10, size=400)
    sampler = data.BucketBatchSampler(lengths, 16, seed=3, pool_batches=5)
    epoch0 = list(sampler)
    assert sorted(i for b in epoch0 for i in b) == list(range(400))
    spread = np.mean([np.ptp(lengths[b]) for b in epoch0])
    assert spread < 2.0  # unbucketed batches would span ~8 s
    sampler.set_epoch(1)
    assert list(sampler) != epoch0


def test_ddp_shards_are_disjoint_and_equal_in_training():
    lengths = np.arange(100, dtype=float)
    shards = [list(data.BucketBatchSampler(lengths, 8, num_replicas=3, rank=r)) for r in range(3)]
    assert len({len(s) for s in shards}) == 1
    seen = [i for s in shards for b in s for i in b]
    assert set(seen) == set(range(100))


def test_resume_continues_the_interrupted_epoch_and_then_the_next_ones():
    lengths = np.arange(100, dtype=float)
    uninterrupted = data.BucketBatchSampler(lengths, 8, seed=5, num_replicas=2, rank=1)
    uninterrupted.set_epoch(3)
    epoch3 = list(uninterrupted)
    uninterrupted.set_epoch(4)
    epoch4 = list(uninterrupted)
    resumed = data.BucketBatchSampler(lengths, 8, seed=5, num_replicas=2, rank=1)
    resumed.resume(3, batches=2)
    assert list(resumed) == epoch3[2:]
    assert len(resumed) == len(epoch3)  # Lightning counts the skipped batches as done
    resumed.set_epoch(4)
    assert list(resumed) == epoch4


def test_one_step_of_two_processes_trains_on_two_consecutive_micro_batches_of_one():
    lengths = np.arange(64, dtype=float)
    one = list(data.BucketBatchSampler(lengths, 4, seed=1))
    ranks = [list(data.BucketBatchSampler(lengths, 4, seed=1, num_replicas=2, rank=r)) for r in (0, 1)]
    assert [pair for step in zip(*ranks) for pair in step] == one


def test_collate_pads_with_zeros_and_keeps_lengths():
    items = [
        {"waveform": np.ones(5, np.float32), "index": 0, "avd": np.zeros(3, np.float32), "region": 2},
        {"waveform": np.ones(3, np.float32), "index": 1, "avd": np.ones(3, np.float32), "region": 0},
    ]
    batch = data.collate(items)
    assert batch.waveform.shape == (2, 5) and batch.lengths.tolist() == [5, 3]
    assert batch.waveform[1, 3:].abs().sum() == 0
    assert batch.region.tolist() == [2, 0] and batch.avd.shape == (2, 3)


def test_loader_streams_cropped_training_audio(corpus):
    table = prepare_labels(Corpus.at(corpus), RegionSet(), progress=False)
    loader = data.loader(table, batch_size=4, max_seconds=0.5)
    batch = next(iter(loader))
    assert batch.waveform.shape[1] <= 8000
    assert batch.avd.min() >= 0 and batch.avd.max() <= 1


def test_measure_stats_subset_is_seeded(corpus):
    table = prepare_labels(Corpus.at(corpus), RegionSet(), progress=False)
    a = data.measure_stats(table, max_files=5, seed=1, progress=False)
    b = data.measure_stats(table, max_files=5, seed=1, progress=False)
    full = data.measure_stats(table, progress=False)
    assert a == b and a.num_files == 5 and full.num_files == len(table)


def test_micro_batches_load_the_same_batches_together(corpus):
    table = prepare_labels(Corpus.at(corpus), RegionSet(), progress=False)
    plain = list(data.loader(table, batch_size=3, seed=5))
    loader = data.loader(table, batch_size=3, seed=5, micro_batches=4)
    grouped = list(loader)
    assert len(grouped) == len(loader) == -(-len(plain) // 4)  # the last step holds the remaining batches
    assert len(table) % 3 and any(len(batch.index) < 3 for batch in plain)  # a short batch stays short
    rebuilt = [batch.index[batch.micro_batch == g].tolist() for batch in grouped for g in batch.micro_batch.unique()]
    assert rebuilt == [batch.index.tolist() for batch in plain]  # same batches, same order
    assert plain[0].micro_batch is None and grouped[0].micro_batch.tolist()[:4] == [0, 0, 0, 1]


def test_micro_batches_resume_mid_epoch_after_whole_steps():
    lengths = np.random.default_rng(2).uniform(1, 10, size=50)
    steps = data.MicroBatchSampler(data.BucketBatchSampler(lengths, 4, seed=1), 3)
    steps.set_epoch(1)
    whole = list(steps)
    resumed = data.MicroBatchSampler(data.BucketBatchSampler(lengths, 4, seed=1), 3)
    resumed.resume(1, 2)
    assert list(resumed) == whole[2:] and len(resumed) == len(whole) == 5
