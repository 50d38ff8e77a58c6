"""Tests for espeak-ng speech from labels (emosphere.speech): the prosody mapping and one utterance."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emosphere import speech
from emosphere.errors import UserError
from emosphere.speech import (
    EspeakError,
    EspeakSettings,
    Prosody,
    ProsodyError,
    espeak_command,
    espeak_settings,
    label_to_prosody,
    synthesise,
    trim,
)

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
SETTINGS = EspeakSettings(voice="en+f2", rate=180, pitch=50, amplitude=60, gap=3, range_pct=100)


def test_prosody_mapping_is_monotonic_and_separable() -> None:
    grid = np.linspace(1.0, 7.0, 13)
    for gender in ("Male", "Female"):
        by_a = [label_to_prosody(x, 4.0, 4.0, gender) for x in grid]
        by_v = [label_to_prosody(4.0, x, 4.0, gender) for x in grid]
        by_d = [label_to_prosody(4.0, 4.0, x, gender) for x in grid]
        assert np.all(np.diff([p.rate_wpm for p in by_a]) > 0)
        assert np.all(np.diff([p.amplitude for p in by_a]) > 0)
        assert np.all(np.diff([p.pitch for p in by_v]) > 0)
        assert np.all(np.diff([p.range_pct for p in by_v]) > 0)
        assert np.all(np.diff([p.pause_ms for p in by_d]) < 0)
        assert np.all(np.diff([p.amplitude for p in by_d]) > 0)
        # each cue belongs to its dimension only
        assert len({p.rate_wpm for p in by_v + by_d}) == 1
        assert len({(p.pitch, p.range_pct) for p in by_a + by_d}) == 1
        assert len({p.pause_ms for p in by_a + by_v}) == 1
        assert len({p.amplitude for p in by_v}) == 1
        assert max(p.amplitude for p in by_a + by_d) <= 150
        assert min(p.pitch for p in by_v) >= 0 and max(p.pitch for p in by_v) <= 99


def test_unknown_gender_is_a_user_error() -> None:
    with pytest.raises(ProsodyError, match="'Male' or 'Female'") as caught:
        label_to_prosody(4.0, 4.0, 4.0, "Other")
    assert isinstance(caught.value, UserError) and isinstance(caught.value, ValueError)


def test_prosody_ends_of_the_scale() -> None:
    low, high = label_to_prosody(1.0, 1.0, 1.0, "Female"), label_to_prosody(7.0, 7.0, 7.0, "Female")
    assert (low.rate_wpm, low.pitch, low.range_pct, low.amplitude, low.pause_ms) == (125.0, 0.0, 0.0, 28.0, 200.0)
    assert high.pitch == 60.0 and high.range_pct == 200.0 and high.pause_ms == 0.0
    assert high.rate_wpm == pytest.approx(285.0) and high.amplitude == pytest.approx(100.0)
    assert label_to_prosody(0.0, 9.0, 4.0) == label_to_prosody(1.0, 7.0, 4.0)  # clipped to the scale


def test_espeak_settings_apply_the_speaker_and_round() -> None:
    prosody = Prosody(rate_wpm=200.0, range_pct=99.6, pitch=98.0, amplitude=160.0, pause_ms=100.0)
    settings = espeak_settings(prosody, "en+m3", pitch_offset=2.5, rate_factor=1.05)
    assert settings == EspeakSettings(voice="en+m3", rate=210, pitch=99, amplitude=150, gap=12, range_pct=100)
    # the pause becomes -g units at the final rate: a -g unit is 8.5 ms at 210 wpm
    assert espeak_settings(prosody, "en+m3", pitch_offset=-99.0, rate_factor=1.0).pitch == 0


def test_espeak_command() -> None:
    assert espeak_command("Hello there.", SETTINGS) == [
        "espeak-ng",
        "-m",
        *("-v", "en+f2", "-s", "180", "-p", "50", "-a", "60", "-g", "3"),
        "--stdout",
        '<speak><prosody range="100%">Hello there.</prosody></speak>',
    ]


def test_trim_keeps_50_ms_around_the_sound() -> None:
    x = np.zeros(16_000)
    x[5000:6000] = 0.5
    trimmed = trim(x)
    assert len(trimmed) == 1000 + 2 * 800 and trimmed[800] == 0.5
    assert len(trim(x[4500:])) == 500 + 1000 + 800  # less silence than the margin: all of it stays
    silent = np.zeros(100)
    assert trim(silent) is silent


@needs_espeak
def test_synthesise_writes_16k_mono_pcm16(tmp_path: Path) -> None:
    path = tmp_path / "one.wav"
    synthesise("The train leaves every hour.", SETTINGS, path)
    info = sf.info(path)
    assert (info.samplerate, info.channels, info.subtype, info.format) == (16_000, 1, "PCM_16", "WAV")
    x, _ = sf.read(path, dtype="float64")
    assert 0.8 <= len(x) / 16_000 <= 4.0
    assert np.sqrt(np.mean(x**2)) > 1e-3 and np.max(np.abs(x)) <= 0.98 + 1 / 32768
    assert np.max(np.abs(x[-400:])) <= 1e-3 + 1 / 32768  # the trailing silence trimmed to 50 ms
    assert [p.name for p in tmp_path.iterdir()] == ["one.wav"]  # no temporary file left
    again = tmp_path / "again.wav"
    synthesise("The train leaves every hour.", SETTINGS, again)
    assert again.read_bytes() == path.read_bytes()


@needs_espeak
def test_espeak_failure_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_run(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise subprocess.CalledProcessError(1, args[0], b"", b"simulated\ncrash")

    monkeypatch.setattr(speech.subprocess, "run", failing_run)
    with pytest.raises(EspeakError, match="failed for one.wav: simulated crash"):
        synthesise("Hello.", SETTINGS, tmp_path / "one.wav")
    assert not list(tmp_path.iterdir())


def test_missing_espeak_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speech, "ESPEAK", "espeak-ng-not-installed-xyz")
    with pytest.raises(EspeakError, match="apt-get install espeak-ng") as caught:
        speech.check_espeak()
    assert isinstance(caught.value, UserError) and isinstance(caught.value, RuntimeError)
