"""The engine: decoding, windows, batches, aggregation and the tables."""

from typing import ClassVar

import numpy as np
import pytest

from emosphere import engine
from emosphere.engine import Failure, Item, Options, Prediction, Predictor, Windowing, aggregate, assemble, file_values
from emosphere.errors import UserError
from emosphere.inputs import ArraySource
from emosphere.schema import describe
from emosphere.sphere import OCTANT_NAMES, RegionSet

SR = 16000


class Recorder:
    """A backend whose A/V/D is the mean, last sample and length of each window; records the batches."""

    region_names: ClassVar[list[str]] = ["low", "high"]
    regions = RegionSet("octant")
    min_samples = 400
    window_seconds = 12.0

    def __init__(self):
        self.batches = []

    def __call__(self, waveform, lengths):
        self.batches.append(lengths.tolist())
        mask = np.arange(waveform.shape[1])[None] < lengths[:, None]
        mean = (waveform * mask).sum(1) / lengths
        last = waveform[np.arange(len(lengths)), lengths - 1]
        avd = np.stack([mean, last, lengths / 1e6], 1)
        return avd, np.stack([np.zeros(len(lengths)), lengths / 1e5], 1)


def ramp(seconds: float, offset: float = 0.0) -> ArraySource:
    n = int(seconds * SR)
    return ArraySource(f"ramp{seconds}", (offset + np.arange(n) / n).astype(np.float32) * 0.5, SR)


def test_the_aggregation_rule_clips_then_weights_by_duration():
    spans = np.array([[0, 100], [50, 350]])
    avd = np.array([[1.4, 0.2, -0.1], [0.5, 0.6, 0.1]])
    probs = np.array([[0.2, 0.8], [0.6, 0.4]])
    file_avd, file_probs = aggregate(spans, avd, probs)
    np.testing.assert_allclose(file_avd, [(1.0 + 3 * 0.5) / 4, (0.2 + 3 * 0.6) / 4, (0 + 3 * 0.1) / 4])
    np.testing.assert_allclose(file_probs, [(0.2 + 3 * 0.6) / 4, (0.8 + 3 * 0.4) / 4])
    assert aggregate(spans, avd, None)[1] is None


def predict(backend, sources, **options):
    return list(Predictor(backend, Options(**options)).stream(enumerate(sources)))


def windowing(**options) -> Windowing:
    return Windowing(Options(**options), min_samples=400, crop_seconds=12.0)


def test_windows_are_batched_longest_first_and_put_back_per_source():
    backend = Recorder()
    sources = [ramp(0.5), ramp(30.0), ramp(0.01), ramp(3.0, 0.1)]
    results = predict(backend, sources, batch_size=3)
    assert [type(r) for r in results] == [Prediction, Prediction, Failure, Prediction]  # input order
    assert results[2].error.startswith("too short")
    long = results[1]
    assert long.spans.tolist() == [[0, 192000], [96000, 288000], [192000, 384000], [288000, 480000]]
    # each window was predicted from its own stretch of audio (its mean, last sample and length)
    samples = sources[1].samples
    for (start, end), avd in zip(long.spans, long.avd):
        np.testing.assert_allclose(avd, [samples[start:end].mean(), samples[end - 1], (end - start) / 1e6], rtol=1e-5)
    flat = [n for batch in backend.batches for n in batch]
    assert flat == sorted(flat, reverse=True) and max(map(len, backend.batches)) == 3


def test_a_table_has_the_file_row_then_its_windows():
    table = Predictor(Recorder(), Options(batch_size=4)).table([ramp(20.0), ramp(1.0)])
    assert table.level.tolist() == ["file", "window", "window", "window", "file"]
    assert table[["start", "end"]].to_numpy().tolist() == [[0, 20], [0, 12], [6, 18], [8, 20], [0, 1]]
    assert table.columns[:4].tolist() == ["file", "level", "start", "end"]
    assert {"arousal", "arousal_unit", "r", "theta", "phi", "silent", "region_point", "region_classifier", "p_low",
            "p_high"} <= set(table)  # fmt: skip
    assert table.arousal.between(1, 7).all() and table.attrs["errors"] == []
    assert table.region_classifier.tolist() == ["high"] * 5


def test_the_window_is_the_model_s_training_crop_and_the_hop_half_of_it():
    backend = Recorder()
    backend.window_seconds = 4.0
    (long,) = predict(backend, [ramp(10.0)])
    assert long.spans.tolist() == [[0, 64000], [32000, 96000], [64000, 128000], [96000, 160000]]
    (chosen,) = predict(backend, [ramp(10.0)], window=5.0, hop=5.0)
    assert chosen.spans.tolist() == [[0, 80000], [80000, 160000]]


def test_assemble_restores_time_order_whatever_the_order_of_windows():
    spans = np.array([[6, 18], [0, 12], [0, 5], [12, 24]])
    owner = np.array([7, 7, 3, 7])
    avd = np.arange(12, dtype=float).reshape(4, 3)
    grouped = assemble(owner, spans, avd, None, {3: "b", 7: "a"})
    assert sorted(grouped) == [3, 7]
    assert grouped[7].spans.tolist() == [[0, 12], [6, 18], [12, 24]]
    assert grouped[7].avd[:, 0].tolist() == [3, 0, 9] and grouped[3].name == "b"


def test_decode_turns_any_failure_into_a_failure(tmp_path):
    (tmp_path / "junk.wav").write_bytes(b"RIFF" + bytes(100))
    failed = windowing().decode(0, str(tmp_path / "junk.wav"))
    assert isinstance(failed, Failure) and failed.error.startswith("cannot read audio")
    assert failed.name == str(tmp_path / "junk.wav")
    assert isinstance(windowing().decode(1, ramp(1.0)), Item)


def test_window_batches_pad_with_zeros():
    items = [Item(0, "a", np.ones(500, np.float32), [(0, 500)]), Item(1, "b", np.ones(900, np.float32), [(100, 900)])]
    (batch,) = windowing(batch_size=8).batches(items)
    assert batch.lengths.tolist() == [800, 500] and batch.owner.tolist() == [1, 0]
    assert batch.waveform[1, 500:].sum() == 0 and batch.waveform[1, :500].sum() == 500


@pytest.mark.parametrize(
    "options, message",
    [
        ({"batch_size": 0}, "batch size"),
        ({"window": 4.0, "hop": 5.0}, "hop"),
        ({"window": 0.01, "hop": 0.01}, "minimum input"),
        ({"workers": -1}, "workers"),
    ],
)
def test_bad_options_are_refused_before_any_work(options, message):
    backend = Recorder()
    with pytest.raises(UserError, match=message):
        Predictor(backend, Options(**options))
    assert backend.batches == []


def test_decoding_threads_give_the_same_results_in_the_same_order():
    sources = [ramp(s) for s in (0.3, 13.0, 0.2, 2.5, 0.001, 1.0)]
    serial = predict(Recorder(), sources, batch_size=2)
    threaded = predict(Recorder(), sources, batch_size=2, workers=3)
    assert [r.name for r in threaded] == [r.name for r in serial]
    for a, b in zip(serial, threaded):
        if isinstance(a, Prediction):
            np.testing.assert_array_equal(a.avd, b.avd)


def test_sources_are_consumed_lazily_with_a_progress_bar_of_files_and_hours(monkeypatch, capsys):
    pulled = []

    def stream():
        for seconds in (1.0, 2.0, 3.0, 4.0):
            pulled.append(seconds)
            yield ramp(seconds)

    monkeypatch.setattr(engine, "POOL_BATCHES", 1)
    results = Predictor(Recorder(), Options(batch_size=1)).stream(
        zip([10, 20, 30, 40], stream()), progress=True, total=4
    )
    first = next(results)
    assert first.index == 10 and pulled == [1.0]  # one source decoded, predicted and handed on
    assert [r.index for r in results] == [20, 30, 40] and len(pulled) == 4
    bar = capsys.readouterr().err
    assert "4/4" in bar and "0.003 h of audio" in bar  # 10 s


def test_no_windows_group_into_no_predictions_and_no_file_values():
    empty = np.zeros(0, np.int64)
    assert assemble(empty, np.zeros((0, 2), np.int64), np.zeros((0, 3)), None, {}) == {}
    avd, probs = file_values([])
    assert avd.shape == (0, 3) and probs is None


def test_silence_is_flagged_per_row_and_logged(caplog):
    quiet = ArraySource("quiet", np.zeros(30 * SR, np.float32), SR)
    half = np.zeros(30 * SR, np.float32)
    half[20 * SR :] = 0.1 * np.sin(np.arange(10 * SR) / 5)  # speech energy in the last 10 s only
    table = Predictor(Recorder()).table([quiet, ArraySource("half", half, SR), ramp(1.0)])
    rows = table.set_index(["file", "start"]).silent
    assert rows["quiet"].all()
    assert rows["half"].tolist() == [False, True, True, False, False]  # the file, then windows from 0, 6, 12, 18 s
    assert not rows["ramp1.0"].any()
    assert [r.getMessage() for r in caplog.records if "silent" in r.getMessage()] == [f"quiet: {engine.SILENT}"]
    assert "-60 dBFS" in engine.SILENT


def test_the_point_s_region_and_the_classifier_s_are_named_apart():
    # a point in IV (A+ V- D+) whose classifier says I: both answers, each under its own name
    probs = np.zeros((1, 8))
    probs[0, 0] = 1.0
    table = describe(np.array([[0.9, 0.2, 0.8]]), probs, list(OCTANT_NAMES), RegionSet("octant"))
    assert table[["region_point", "region_classifier"]].iloc[0].tolist() == ["IV", "I"]
    without_head = describe(np.array([[0.1, 0.9, 0.1]]), None, [], RegionSet("sphere90"))
    assert (
        "region_classifier" not in without_head
        and without_head.region_point[0]
        == RegionSet("sphere90").class_names[RegionSet("sphere90").assign(np.array([1.6, 6.4, 1.6]))]
    )


class Clock:
    """A clock that only the test moves."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_progress_comes_with_the_first_batch_and_its_eta_follows_the_audio(monkeypatch):
    clock, shown = Clock(), []

    class Timed(Recorder):
        def __call__(self, waveform, lengths):  # 1 s per 10 s of audio in the batch
            clock.now += lengths.sum() / SR / 10
            return super().__call__(waveform, lengths)

    class Watched(engine.Meter):
        def __init__(self, total, *, enabled):
            super().__init__(total, enabled=enabled, clock=clock)

        def show(self, refresh=True):
            super().show(refresh)
            shown.append((clock.now, self.work_done, self.eta()))

    monkeypatch.setattr(engine, "Meter", Watched)
    decode = engine.load_source

    def slow_decode(source):  # decoding takes time too: 1 s per 100 s of audio
        samples = decode(source)
        clock.now += len(samples) / SR / 100
        return samples

    monkeypatch.setattr(engine, "load_source", slow_decode)
    rng = np.random.default_rng(1)
    seconds = np.concatenate([rng.uniform(0.5, 3, 150), rng.uniform(20, 60, 10)])  # long files here and there
    sources = [ramp(round(s, 2), offset=i) for i, s in enumerate(rng.permutation(seconds))]
    results = Predictor(Timed(), Options(batch_size=4)).stream(enumerate(sources), total=len(sources), progress=True)
    next(results)
    assert shown and shown[0][1] > 0  # shown after the first batch, while the first pool is under way
    list(results)
    end, work = clock.now, shown[-1][1]
    at_tenth = next(entry for entry in shown if entry[1] >= 0.1 * work)
    assert 0.5 <= at_tenth[2] / (end - at_tenth[0]) <= 2.0
