"""Emotional speech from espeak-ng: the prosody an A/V/D label point gets, and one utterance
spoken with it, for the demo corpus (:mod:`emosphere.demo`).

Label -> prosody
    Every dimension drives its own strong, monotonic cue, and the cues survive
    per-utterance waveform normalisation (``x = (value - 1) / 6`` in [0, 1]):

    * arousal   -> speaking rate ``-s`` 125 -> 285 wpm (geometric);
    * valence   -> pitch level ``-p`` (male 22 -> 99, female 0 -> 60, i.e. about
      80 -> 165 Hz and 125 -> 215 Hz; the female span is shifted down so the
      absolute pitch of the two genders overlaps more) and pitch range (SSML
      ``<prosody range>``) 0 % -> 200 % (monotone -> lively);
    * dominance -> pause between words 200 -> 0 ms (``-g``, compensated for the
      speaking rate);
    * loudness  -> amplitude ``-a`` 28 -> 100 (+11.1 dB), driven by the mean of
      arousal and dominance (a bonus cue; scale-invariant models cannot see it).

    :func:`label_to_prosody` gives these settings; :func:`espeak_settings` adds a
    speaker's pitch offset and rate factor and rounds them to the integers of
    espeak-ng's command line.

One utterance
    :func:`synthesise` runs ``espeak-ng -m`` (SSML) once, mixes its output down to
    16 kHz mono (:func:`emosphere.audio.to_mono_16k`), trims leading and trailing
    silence to 50 ms, scales the rare peak above 0.98 down (never clips) and writes
    a 16 kHz mono PCM_16 WAV atomically (:func:`emosphere.io.atomic_path`). The
    file is a pure function of the text and the settings, for a given espeak-ng,
    NumPy and soxr version.

espeak-ng is a system package; :func:`check_espeak` raises :class:`EspeakError`
with the install command when it is not on ``PATH``.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from .audio import SAMPLE_RATE, to_mono_16k
from .errors import UserError
from .io import atomic_path
from .sphere import to_unit

ESPEAK = "espeak-ng"
"""The synthesiser's command."""
INSTALL_HINT = "`sudo apt-get install espeak-ng` (Debian/Ubuntu) or `brew install espeak-ng` (macOS)"

RATE_WPM = (125.0, 285.0)
"""Speaking rate (``-s``, words per minute) at arousal 1 and 7, geometric in between."""
PITCH: dict[str, tuple[float, float]] = {"Male": (22.0, 99.0), "Female": (0.0, 60.0)}
"""Pitch level (``-p``, 0-99) at valence 1 and 7 by gender, linear; the female span is shifted
down so that the absolute pitch of both genders overlaps more."""
RANGE_PCT = (0.0, 200.0)
"""Pitch range (SSML ``<prosody range>``, %) at valence 1 and 7, linear."""
AMPLITUDE = (28.0, 100.0)
"""Amplitude (``-a``) at the mean of arousal and dominance 1 and 7, geometric."""
PAUSE_MS = (200.0, 0.0)
"""Pause between words (ms) at dominance 1 and 7, linear."""
MAX_PITCH, MAX_AMPLITUDE = 99.0, 150.0
"""The largest ``-p`` espeak-ng takes, and the ceiling on ``-a`` that keeps it from clipping."""
GAP_RATE = np.array([100.0, 110.0, 140.0, 175.0, 210.0, 250.0, 270.0, 300.0])
GAP_MS_PER_UNIT = np.array([28.0, 24.5, 17.0, 11.9, 8.5, 5.6, 4.6, 3.6])
"""Measured length of one ``-g`` unit (ms per word gap) at the speaking rates of :data:`GAP_RATE`
in espeak-ng 1.51 (the unit shrinks quickly as speech speeds up); it turns the pause into ``-g``."""

TRIM_THRESHOLD = 1e-3
"""Samples quieter than this (about -60 dBFS) at both ends are silence."""
TRIM_MARGIN = SAMPLE_RATE // 20
"""Silence kept at both ends: 50 ms."""
MAX_PEAK = 0.98
"""A louder utterance is scaled down to this peak (rare: resampling overshoot)."""


class EspeakError(UserError, RuntimeError):
    """espeak-ng is not installed, or failed on an utterance; the message says which."""


class ProsodyError(UserError, ValueError):
    """A label point that has no prosody (a gender other than Male or Female)."""


@dataclass(frozen=True)
class Prosody:
    """espeak-ng settings for one utterance (before speaker offsets)."""

    rate_wpm: float
    range_pct: float
    pitch: float
    amplitude: float
    pause_ms: float


@dataclass(frozen=True)
class EspeakSettings:
    """One utterance's espeak-ng voice and settings, as its command line takes them."""

    voice: str
    rate: int
    pitch: int
    amplitude: int
    gap: int
    range_pct: int


def _unit(value: float) -> float:
    return min(max(float(to_unit(value)), 0.0), 1.0)


def _linear(low_high: tuple[float, float], x: float) -> float:
    low, high = low_high
    return low + (high - low) * x


def _geometric(low_high: tuple[float, float], x: float) -> float:
    low, high = low_high
    return low * (high / low) ** x


def label_to_prosody(act: float, val: float, dom: float, gender: str = "Male") -> Prosody:
    """Map an (A, V, D) point on the 1-7 scale to espeak-ng prosody settings.

    Every dimension drives its own cue monotonically: arousal the speaking
    rate, valence the pitch level and pitch range, dominance (inversely) the
    pause between words.  Loudness rises with both arousal and dominance.
    ``gender`` (``"Male"`` or ``"Female"``) selects the pitch-level span.
    Speaker offsets are applied on top of these values (:func:`espeak_settings`).
    """
    if gender not in PITCH:
        raise ProsodyError(f"gender must be 'Male' or 'Female', got {gender!r}")
    a, v, d = _unit(act), _unit(val), _unit(dom)
    return Prosody(
        rate_wpm=_geometric(RATE_WPM, a),
        range_pct=_linear(RANGE_PCT, v),
        pitch=_linear(PITCH[gender], v),
        amplitude=_geometric(AMPLITUDE, 0.5 * (a + d)),
        pause_ms=_linear(PAUSE_MS, d),
    )


def espeak_settings(prosody: Prosody, voice: str, pitch_offset: float, rate_factor: float) -> EspeakSettings:
    """The settings of ``prosody`` spoken by ``voice`` (e.g. ``en+m1``) with a speaker's pitch offset
    (``-p`` units) and rate factor, rounded; the pause becomes a ``-g`` value at the final rate."""
    rate = prosody.rate_wpm * rate_factor
    unit_ms = float(np.interp(rate, GAP_RATE, GAP_MS_PER_UNIT))
    return EspeakSettings(
        voice=voice,
        rate=int(round(rate)),
        pitch=int(round(min(max(prosody.pitch + pitch_offset, 0.0), MAX_PITCH))),
        amplitude=int(round(min(prosody.amplitude, MAX_AMPLITUDE))),
        gap=int(round(prosody.pause_ms / unit_ms)),
        range_pct=int(round(prosody.range_pct)),
    )


def check_espeak() -> None:
    """Raise :class:`EspeakError` with the install command if espeak-ng is not on ``PATH``."""
    if shutil.which(ESPEAK) is None:
        raise EspeakError(
            f"{ESPEAK} was not found on PATH; the demo corpus is synthesised with it. Install it, e.g. {INSTALL_HINT}."
        )


def espeak_command(text: str, settings: EspeakSettings) -> list[str]:
    """The espeak-ng command line that speaks ``text`` (plain text, no markup) to stdout as WAV."""
    ssml = f'<speak><prosody range="{settings.range_pct}%">{text}</prosody></speak>'
    flags = ("-v", "-s", "-p", "-a", "-g")
    values = (settings.voice, settings.rate, settings.pitch, settings.amplitude, settings.gap)
    return [ESPEAK, "-m", *(str(part) for pair in zip(flags, values) for part in pair), "--stdout", ssml]


def _speak(command: list[str], name: str) -> bytes:
    """Run espeak-ng and return the WAV it writes; any failure is an :class:`EspeakError` naming ``name``."""
    try:
        return subprocess.run(command, capture_output=True, check=True).stdout
    except FileNotFoundError as error:  # pragma: no cover - check_espeak runs first
        raise EspeakError(f"{ESPEAK} is not installed: {INSTALL_HINT}") from error
    except subprocess.CalledProcessError as error:
        detail = " ".join(error.stderr.decode(errors="replace").split())
        raise EspeakError(f"{ESPEAK} failed for {name}: {detail}") from error


def trim(samples: np.ndarray) -> np.ndarray:
    """Cut leading and trailing silence down to :data:`TRIM_MARGIN` (espeak-ng adds ~0.3 s at the end)."""
    loud = np.flatnonzero(np.abs(samples) > TRIM_THRESHOLD)
    if loud.size == 0:
        return samples
    start = max(int(loud[0]) - TRIM_MARGIN, 0)
    stop = min(int(loud[-1]) + 1 + TRIM_MARGIN, len(samples))
    return samples[start:stop]


def synthesise(text: str, settings: EspeakSettings, path: Path) -> None:
    """Speak ``text`` with ``settings`` and write it to ``path`` atomically: 16 kHz mono PCM_16 WAV,
    silence trimmed, the peak at most :data:`MAX_PEAK`."""
    wav, rate = sf.read(io.BytesIO(_speak(espeak_command(text, settings), path.name)), dtype="float32", always_2d=True)
    samples = trim(np.asarray(to_mono_16k(wav, rate), dtype=np.float64))
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    if peak > MAX_PEAK:
        samples = samples * (MAX_PEAK / peak)
    pcm = np.clip(np.round(samples * 32768.0), -32768, 32767)
    with atomic_path(path) as tmp:
        sf.write(tmp, pcm.astype(np.int16), SAMPLE_RATE, subtype="PCM_16", format="WAV")
