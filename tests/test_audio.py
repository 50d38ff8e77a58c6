import numpy as np
import pytest
import soundfile as sf

from emosphere import audio


def tone(rate, seconds=1.0, freq=220.0):
    t = np.arange(int(rate * seconds)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_load_resamples_and_mixes_down(tmp_path):
    reference = tone(16000)
    sf.write(tmp_path / "a.flac", np.stack([tone(44100), tone(44100)], 1), 44100)
    loaded = audio.load(tmp_path / "a.flac")
    assert loaded.dtype == np.float32 and loaded.ndim == 1
    assert abs(len(loaded) - 16000) <= 1
    n = min(len(loaded), len(reference))
    np.testing.assert_allclose(loaded[100 : n - 100], reference[100 : n - 100], atol=2e-3)


def test_load_keeps_only_the_start(tmp_path):
    sf.write(tmp_path / "long.wav", tone(22050, seconds=3.0), 22050)
    assert len(audio.load(tmp_path / "long.wav", max_seconds=1.5)) == 24000


@pytest.mark.parametrize("content", [b"", b"not audio at all"])
def test_unreadable_file_names_the_file(tmp_path, content):
    path = tmp_path / "broken.wav"
    path.write_bytes(content)
    with pytest.raises(audio.AudioError, match="broken.wav"):
        audio.load(path)


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(audio.AudioError, match="nowhere.wav"):
        audio.load(tmp_path / "nowhere.wav")


def test_windows_cover_the_signal():
    assert audio.windows(16000 * 5, 12, 6) == [(0, 80000)]
    spans = audio.windows(16000 * 30, 12, 6)
    assert spans[0] == (0, 192000) and spans[-1][1] == 480000
    assert all(e - s == 192000 for s, e in spans)
    assert audio.windows(16000 * 13, 12, 6) == [(0, 192000), (16000, 208000)]


def test_stats_match_numpy_and_survive_json(tmp_path):
    rng = np.random.default_rng(0)
    chunks = [rng.normal(0.1, 0.3, size=n).astype(np.float32) for n in (1000, 5000, 300)]
    acc = audio.StatsAccumulator()
    for chunk in chunks:
        acc.add(chunk)
    stats = acc.result()
    everything = np.concatenate(chunks).astype(np.float64)
    assert stats.mean == pytest.approx(everything.mean(), rel=1e-9)
    assert stats.std == pytest.approx(everything.std(), rel=1e-9)
    assert (stats.num_files, stats.num_samples) == (3, 6300)
    stats.save(tmp_path / "stats.json")
    assert audio.AudioStats.load(tmp_path / "stats.json") == stats
    assert "mean" in (tmp_path / "stats.json").read_text()  # JSON, not pickle
