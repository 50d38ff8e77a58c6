import re

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


@pytest.mark.parametrize(
    "content, message",
    [(b"", "broken.wav: empty file (0 bytes)"), (b"not audio at all", "broken.wav: cannot read audio (Format")],
)
def test_unreadable_file_names_the_file_and_says_why_in_plain_words(tmp_path, content, message):
    path = tmp_path / "broken.wav"
    path.write_bytes(content)
    with pytest.raises(audio.AudioError, match=re.escape(f"{tmp_path}/{message}")):
        audio.load(path)


def test_missing_file_is_not_found_and_audio_without_samples_is_empty(tmp_path):
    with pytest.raises(audio.AudioError, match=re.escape(f"{tmp_path}/nowhere.wav: not found")):
        audio.load(tmp_path / "nowhere.wav")
    sf.write(tmp_path / "header.wav", np.zeros((0, 1), np.float32), 16000)
    with pytest.raises(audio.AudioError, match=re.escape(f"{tmp_path}/header.wav: empty audio (0 samples)")):
        audio.load(tmp_path / "header.wav")
    with pytest.raises(audio.AudioError, match=re.escape("empty audio (0 samples)")):
        audio.check_length(np.zeros(0, np.float32), 400)  # an array, as an upload is


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


# --- the loader fed random and damaged bytes (hypothesis) ----------------------------------------

import io  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FUZZ = settings(max_examples=40, deadline=10_000, suppress_health_check=[HealthCheck.function_scoped_fixture])
EXTENSIONS = st.sampled_from([".wav", ".flac", ".ogg", ".mp3", ".aiff", ".raw", ""])


def encoded(fmt: str) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, tone(22050, seconds=0.3), 22050, format=fmt)
    return buffer.getvalue()


VALID = {fmt: encoded(fmt) for fmt in ("WAV", "FLAC", "OGG", "AIFF")}


def assert_loads_or_names_the_file(path):
    try:
        samples = audio.load(path, max_seconds=1.0)
    except audio.AudioError as error:
        assert path.name in str(error)
        return
    assert samples.dtype == np.float32 and samples.ndim == 1 and len(samples) > 0
    assert np.isfinite(samples).all()


NOT_AN_MPEG_FRAME = st.binary(max_size=4096).filter(lambda b: not b.startswith((b"\xff", b"ID3")))
"""Random bytes; those that start like an MPEG frame (sync bits, or an ID3 tag) are left out: MP3
decoders resynchronise on any frame header and may decode noise from them."""


@FUZZ
@given(NOT_AN_MPEG_FRAME, EXTENSIONS)
def test_random_bytes_raise_audio_error_naming_the_file(tmp_path, content, extension):
    path = tmp_path / f"random{extension}"
    path.write_bytes(content)
    with pytest.raises(audio.AudioError) as error:
        audio.load(path, max_seconds=1.0)
    assert path.name in str(error.value)


@FUZZ
@given(st.sampled_from(sorted(VALID)), st.data())
def test_damaged_audio_files_load_or_raise_audio_error(tmp_path, fmt, data):
    content = bytearray(VALID[fmt])
    cut = data.draw(st.integers(0, len(content)), label="truncate at")
    content = content[:cut]
    for _ in range(data.draw(st.integers(0, 8), label="flipped bytes")):
        if content:
            position = data.draw(st.integers(0, len(content) - 1))
            content[position] = data.draw(st.integers(0, 255))
    path = tmp_path / f"damaged.{fmt.lower()}"
    path.write_bytes(bytes(content))
    assert_loads_or_names_the_file(path)


def test_what_the_fuzzing_found(tmp_path):
    (tmp_path / "headerless.raw").write_bytes(b"\x00\x01" * 800)  # soundfile raised TypeError
    with pytest.raises(audio.AudioError, match="headerless.raw"):
        audio.load(tmp_path / "headerless.raw")
    sf.write(tmp_path / "damaged.wav", np.zeros(50, np.float32), 100)  # would resample 160-fold
    with pytest.raises(audio.AudioError, match="damaged.wav: implausible sample rate 100 Hz"):
        audio.load(tmp_path / "damaged.wav")


@pytest.mark.parametrize("text", ['{"mean": 0.1, "std": 0.3', '{"mean": 0.1}', "\xff"])
def test_statistics_that_are_not_ours_are_named(tmp_path, text):
    path = tmp_path / "audio_stats.json"
    path.write_text(text, encoding="latin-1")
    with pytest.raises(audio.AudioError, match="audio_stats.json: not audio statistics written by emosphere"):
        audio.AudioStats.load(path)
