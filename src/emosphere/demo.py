"""Synthetic MSP-Podcast-style demo corpus, spoken by espeak-ng.

The demo corpus lets the whole pipeline (data loading, training, evaluation,
export) run on a fresh machine without access to the real MSP-Podcast data.
It is written in the MSP-Podcast layout (``Audios/*.wav`` plus
``Labels/labels_consensus.csv``) so that the normal loaders read it unchanged.

Labels.  Arousal (A), valence (V) and dominance (D) are rater-mean-like values
on the 1-7 scale.  About 90 % of the rows come from a correlated Gaussian
(means A 4.1, V 4.3, D 4.15; SDs 0.95 / 1.05 / 0.85; corr A-D 0.75, A-V 0.12,
V-D 0.18), the remaining ~10 % ("corner" rows) are spread over all eight
octants around (4, 4, 4) with values up to the scale ends.  Values are clipped
to [1, 7] and rounded to 0.2 steps (five-rater means).  ``EmoClass`` is the
nearest categorical prototype (always ``N`` within 0.8 of the centre on every
axis; the neutral prototype (4, 4.2, 4) also competes further out);
4 % of rows are relabelled ``O`` (other) and 6 % ``X`` (no agreement).

Label -> prosody.  Every dimension drives its own strong, monotonic cue, and
the cues survive per-utterance waveform normalisation (``x = (value - 1) / 6``
in [0, 1]):

* arousal   -> speaking rate ``-s`` 125 -> 285 wpm (geometric);
* valence   -> pitch level ``-p`` (male 22 -> 99, female 0 -> 60, i.e. about
  80 -> 165 Hz and 125 -> 215 Hz; the female span is shifted down so the
  absolute pitch of the two genders overlaps more) and pitch range (SSML
  ``<prosody range>``) 0 % -> 200 % (monotone -> lively);
* dominance -> pause between words 200 -> 0 ms (``-g``, compensated for the
  speaking rate);
* loudness  -> amplitude ``-a`` 28 -> 100 (+11.1 dB), driven by the mean of
  arousal and dominance (a bonus cue; scale-invariant models cannot see it).

Nuisance factors, independent of the labels: twelve espeak-ng voice variants
(``en+m1``..``en+m7``, ``en+f1``..``en+f5``), a per-speaker pitch offset
(+-3 ``-p`` units) and rate factor (0.94-1.06), and 64 neutral sentences.
Every speaker belongs to exactly one split.  The output is a pure function of
the arguments: the same ``seed`` gives byte-identical CSV and WAV files.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import soxr

from .errors import UserError
from .io import atomic_path

__all__ = [
    "CSV_COLUMNS",
    "SAMPLE_RATE",
    "SENTENCES",
    "VOICES",
    "Prosody",
    "demo_labels",
    "label_to_prosody",
    "make_demo_corpus",
]

SAMPLE_RATE = 16_000
CSV_COLUMNS: tuple[str, ...] = (
    "FileName",
    "EmoClass",
    "EmoAct",
    "EmoVal",
    "EmoDom",
    "SpkrID",
    "Gender",
    "Split_Set",
)
SPLITS: tuple[str, ...] = ("Train", "Development", "Test1")

#: espeak-ng voice variants used as speakers, with the gender they represent.
VOICES: tuple[tuple[str, str], ...] = (
    ("m1", "Male"),
    ("m2", "Male"),
    ("m3", "Male"),
    ("m4", "Male"),
    ("m5", "Male"),
    ("m6", "Male"),
    ("m7", "Male"),
    ("f1", "Female"),
    ("f2", "Female"),
    ("f3", "Female"),
    ("f4", "Female"),
    ("f5", "Female"),
)

#: Emotionally neutral sentences (about 8-12 syllables, 1.5-4 s spoken).
SENTENCES: tuple[str, ...] = (
    "The meeting starts at nine on Tuesday morning.",
    "Please put the blue folder on the second shelf.",
    "The train to the city leaves every hour.",
    "We painted the kitchen walls a light grey.",
    "The library closes early on public holidays.",
    "My neighbour keeps a small garden behind the house.",
    "The report has four chapters and an appendix.",
    "They moved the table closer to the window.",
    "The bus stop is across the street from the bank.",
    "I usually drink a glass of water after lunch.",
    "The museum has a new exhibit about old maps.",
    "She parked the car next to the green fence.",
    "The package should arrive by the end of the week.",
    "There are twelve chairs in the conference room.",
    "The river runs along the edge of the town.",
    "He wrote the address on the back of the card.",
    "The store sells bread, milk, and fresh fruit.",
    "Our office is on the third floor of the building.",
    "The printer needs a new cartridge soon.",
    "We will discuss the schedule after the break.",
    "The bridge was built more than fifty years ago.",
    "The recipe calls for two cups of flour.",
    "The weather report said it would be cloudy tomorrow.",
    "I left my umbrella in the hallway.",
    "The class begins with a short review of last week.",
    "The map shows three roads leading to the lake.",
    "He takes the same route to work every day.",
    "The window in the living room faces north.",
    "The form must be signed by both parties.",
    "They counted the boxes before closing the van.",
    "The clock on the wall is five minutes slow.",
    "A cup of tea is on the desk by the lamp.",
    "The software update will install tonight.",
    "The park has a path that goes around the pond.",
    "We keep the spare keys in the top drawer.",
    "The lecture was moved to the larger hall.",
    "Most of the shops open at ten in the morning.",
    "The notebook has a brown cover and lined pages.",
    "The phone number is written on the first page.",
    "She ordered a sandwich and a bowl of soup.",
    "The building has an elevator near the entrance.",
    "The farmer planted corn in the northern field.",
    "The hotel is a short walk from the station.",
    "The numbers in the table add up to one hundred.",
    "He hung his coat on the hook by the door.",
    "The road was repaved during the summer.",
    "We need more paper for the next session.",
    "The dog sleeps on a blanket near the stove.",
    "The film lasts about two hours.",
    "The students handed in their essays on Friday.",
    "The plant on the balcony needs water twice a week.",
    "The tickets are available at the front desk.",
    "The cabinet holds plates, bowls, and glasses.",
    "The path turns left after the wooden gate.",
    "The committee will vote on the plan next month.",
    "Her bicycle has a basket on the front.",
    "The instructions are printed on the box.",
    "The kitchen light switch is by the door.",
    "The store is closed on the first of January.",
    "The laptop battery lasts about six hours.",
    "The street was quiet in the early afternoon.",
    "The shirt comes in three different sizes.",
    "We sorted the letters into two piles.",
    "The station clock showed a quarter past four.",
)

# --- label distribution ---------------------------------------------------
_MEAN = np.array([4.10, 4.30, 4.15])
_SD = np.array([0.95, 1.05, 0.85])
_CORR = np.array(
    [
        [1.00, 0.12, 0.75],
        [0.12, 1.00, 0.18],
        [0.75, 0.18, 1.00],
    ]
)
_CORNER_FRACTION = 0.10
_O_SHARE = 0.04
_X_SHARE = 0.06
_NEUTRAL_RADIUS = 0.8
#: Categorical prototypes (A, V, D); EmoClass is the nearest one.
_PROTOTYPES: dict[str, tuple[float, float, float]] = {
    "A": (5.8, 2.4, 5.6),  # angry
    "S": (2.6, 2.6, 3.0),  # sad
    "H": (5.3, 5.9, 4.9),  # happy
    "U": (6.0, 4.8, 3.6),  # surprise
    "F": (5.4, 2.6, 2.8),  # fear
    "D": (4.4, 2.5, 4.6),  # disgust
    "C": (3.4, 3.1, 5.2),  # contempt
    "N": (4.0, 4.2, 4.0),  # neutral
}

# --- label -> prosody -----------------------------------------------------
_RATE_WPM = (125.0, 285.0)  # arousal, geometric
# valence, linear (espeak-ng -p, 0-99); the female span is shifted down so
# that the absolute pitch of both genders overlaps more.
_PITCH: dict[str, tuple[float, float]] = {"Male": (22.0, 99.0), "Female": (0.0, 60.0)}
_RANGE_PCT = (0.0, 200.0)  # valence, linear (SSML <prosody range>)
_AMPLITUDE = (28.0, 100.0)  # mean of arousal and dominance, geometric (-a <= 150)
_PAUSE_MS = (200.0, 0.0)  # dominance, linear (inter-word pause)
# Speaker nuisance.
_SPK_PITCH_OFFSET = 3.0
_SPK_RATE_FACTOR = 0.06
# Measured duration of one ``-g`` unit (ms per word gap) as a function of the
# speaking rate in espeak-ng 1.51 (the unit shrinks quickly as speech speeds
# up), used to turn the requested pause length into a ``-g`` value.
_GAP_RATE = np.array([100.0, 110.0, 140.0, 175.0, 210.0, 250.0, 270.0, 300.0])
_GAP_MS_PER_UNIT = np.array([28.0, 24.5, 17.0, 11.9, 8.5, 5.6, 4.6, 3.6])

_ESPEAK = "espeak-ng"
_MAX_PEAK = 0.98
_TRIM_THRESHOLD = 1e-3  # about -60 dBFS
_TRIM_MARGIN = SAMPLE_RATE // 20  # keep 50 ms of silence at both ends


@dataclass(frozen=True)
class Prosody:
    """espeak-ng settings for one utterance (before speaker offsets)."""

    rate_wpm: float
    range_pct: float
    pitch: float
    amplitude: float
    pause_ms: float


def _unit(value: float) -> float:
    return min(max((float(value) - 1.0) / 6.0, 0.0), 1.0)


def _lin(lo_hi: tuple[float, float], x: float) -> float:
    lo, hi = lo_hi
    return lo + (hi - lo) * x


def _geo(lo_hi: tuple[float, float], x: float) -> float:
    lo, hi = lo_hi
    return lo * (hi / lo) ** x


def label_to_prosody(act: float, val: float, dom: float, gender: str = "Male") -> Prosody:
    """Map an (A, V, D) point on the 1-7 scale to espeak-ng prosody settings.

    Every dimension drives its own cue monotonically: arousal the speaking
    rate, valence the pitch level and pitch range, dominance (inversely) the
    pause between words.  Loudness rises with both arousal and dominance.
    ``gender`` (``"Male"`` or ``"Female"``) selects the pitch-level span.
    Speaker offsets are applied on top of these values.
    """
    if gender not in _PITCH:
        raise ValueError(f"gender must be 'Male' or 'Female', got {gender!r}")
    a, v, d = _unit(act), _unit(val), _unit(dom)
    return Prosody(
        rate_wpm=_geo(_RATE_WPM, a),
        range_pct=_lin(_RANGE_PCT, v),
        pitch=_lin(_PITCH[gender], v),
        amplitude=_geo(_AMPLITUDE, 0.5 * (a + d)),
        pause_ms=_lin(_PAUSE_MS, d),
    )


# --- corpus plan ----------------------------------------------------------
@dataclass(frozen=True)
class _Speaker:
    spkr_id: int
    voice: str
    gender: str
    split: str
    pitch_offset: float
    rate_factor: float


@dataclass(frozen=True)
class _Job:
    file_name: str
    text: str
    voice: str
    rate: int
    pitch: int
    amplitude: int
    gap: int
    range_pct: int


def _sample_labels(rng: np.random.Generator, n: int) -> np.ndarray:
    """Draw ``n`` (A, V, D) rows on the 1-7 scale (see module docstring)."""
    if n <= 0:
        return np.zeros((0, 3))
    cov = _CORR * np.outer(_SD, _SD)
    n_corner = min(n, max(int(round(_CORNER_FRACTION * n)), 8))
    base = rng.multivariate_normal(_MEAN, cov, size=n - n_corner, method="cholesky")
    # Corner rows: the first eight cycle through all octants (so any split with
    # at least eight rows covers every octant), the rest favour octants where
    # arousal and dominance agree, as in real data.
    octants = np.array([[(k >> 2) & 1, (k >> 1) & 1, k & 1] for k in range(8)])
    agree = octants[:, 0] == octants[:, 2]
    weights = np.where(agree, 3.0, 1.0)
    weights /= weights.sum()
    idx = np.concatenate([np.arange(min(8, n_corner)), rng.choice(8, size=max(n_corner - 8, 0), p=weights)])
    signs = np.where(octants[idx] == 1, 1.0, -1.0)
    # Magnitudes: beyond the rounding step, out to the scale ends.
    mags = rng.uniform(0.4, 3.0, size=signs.shape)
    corner = 4.0 + signs * mags
    labels = np.concatenate([base, corner])
    labels = labels[rng.permutation(n)]
    labels = np.clip(np.round(labels * 5.0) / 5.0, 1.0, 7.0)
    return labels


def _emo_class(avd: np.ndarray) -> str:
    if np.max(np.abs(avd - 4.0)) < _NEUTRAL_RADIUS:
        return "N"
    names = list(_PROTOTYPES)
    protos = np.array([_PROTOTYPES[k] for k in names])
    return names[int(np.argmin(((protos - avd) ** 2).sum(axis=1)))]


def _n_speakers(n: int) -> int:
    if n <= 0:
        return 0
    return min(n, max(2, int(round(n / 40))))


def _pause_to_gap(pause_ms: float, rate: float) -> int:
    unit = float(np.interp(rate, _GAP_RATE, _GAP_MS_PER_UNIT))
    return int(round(pause_ms / unit))


def _plan(n_train: int, n_dev: int, n_test: int, seed: int) -> tuple[pd.DataFrame, list[_Job]]:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E12]))
    males = [v for v, g in VOICES if g == "Male"]
    females = [v for v, g in VOICES if g == "Female"]
    m_order = list(rng.permutation(males))
    f_order = list(rng.permutation(females))
    m_i = f_i = 0
    spk_next = 1
    rows: list[dict[str, object]] = []
    jobs: list[_Job] = []
    sentence_order = rng.permutation(len(SENTENCES))
    sent_i = 0
    for split, n in zip(SPLITS, (n_train, n_dev, n_test)):
        n_spk = _n_speakers(n)
        speakers: list[_Speaker] = []
        first_gender = int(rng.integers(2))
        for k in range(n_spk):
            if (k + first_gender) % 2 == 0:
                voice, gender = str(m_order[m_i % len(m_order)]), "Male"
                m_i += 1
            else:
                voice, gender = str(f_order[f_i % len(f_order)]), "Female"
                f_i += 1
            speakers.append(
                _Speaker(
                    spkr_id=spk_next,
                    voice=voice,
                    gender=gender,
                    split=split,
                    pitch_offset=float(rng.uniform(-_SPK_PITCH_OFFSET, _SPK_PITCH_OFFSET)),
                    rate_factor=float(1.0 + rng.uniform(-_SPK_RATE_FACTOR, _SPK_RATE_FACTOR)),
                )
            )
            spk_next += 1
        labels = _sample_labels(rng, n)
        # Balanced speaker assignment in random order.
        spk_of = rng.permutation(np.arange(n) % max(n_spk, 1))
        utt_count = [0] * n_spk
        for i in range(n):
            spk = speakers[int(spk_of[i])]
            utt_count[int(spk_of[i])] += 1
            act, val, dom = (float(x) for x in labels[i])
            emo = _emo_class(labels[i])
            u = rng.random()
            if u < _O_SHARE:
                emo = "O"
            elif u < _O_SHARE + _X_SHARE:
                emo = "X"
            file_name = f"DEMO_{spk.spkr_id:04d}_{utt_count[int(spk_of[i])]:04d}.wav"
            text = SENTENCES[int(sentence_order[sent_i % len(SENTENCES)])]
            sent_i += 1
            if sent_i % len(SENTENCES) == 0:
                sentence_order = rng.permutation(len(SENTENCES))
            p = label_to_prosody(act, val, dom, spk.gender)
            rate = p.rate_wpm * spk.rate_factor
            jobs.append(
                _Job(
                    file_name=file_name,
                    text=text,
                    voice=f"en+{spk.voice}",
                    rate=int(round(rate)),
                    pitch=int(round(min(max(p.pitch + spk.pitch_offset, 0.0), 99.0))),
                    amplitude=int(round(min(p.amplitude, 150.0))),
                    gap=_pause_to_gap(p.pause_ms, rate),
                    range_pct=int(round(p.range_pct)),
                )
            )
            rows.append(
                {
                    "FileName": file_name,
                    "EmoClass": emo,
                    "EmoAct": round(act, 1),
                    "EmoVal": round(val, 1),
                    "EmoDom": round(dom, 1),
                    "SpkrID": spk.spkr_id,
                    "Gender": spk.gender,
                    "Split_Set": split,
                }
            )
    df = pd.DataFrame(rows, columns=list(CSV_COLUMNS))
    return df, jobs


# --- synthesis --------------------------------------------------------------
class EspeakMissing(UserError, RuntimeError):
    """espeak-ng, which synthesises the demo corpus, is not installed."""


class DemoSizeError(UserError, ValueError):
    """Corpus sizes that make no corpus."""


def _check_espeak() -> None:
    if shutil.which(_ESPEAK) is None:
        raise EspeakMissing(
            "espeak-ng was not found on PATH; the demo corpus is synthesised with it. "
            "Install it, e.g. `sudo apt-get install espeak-ng` (Debian/Ubuntu) or "
            "`brew install espeak-ng` (macOS)."
        )


def _trim(x: np.ndarray) -> np.ndarray:
    """Cut leading/trailing silence (espeak-ng adds ~0.3 s at the end)."""
    loud = np.flatnonzero(np.abs(x) > _TRIM_THRESHOLD)
    if loud.size == 0:
        return x
    start = max(int(loud[0]) - _TRIM_MARGIN, 0)
    stop = min(int(loud[-1]) + 1 + _TRIM_MARGIN, len(x))
    return x[start:stop]


def _synthesise(job: _Job, audio_dir: Path) -> None:
    ssml = f'<speak><prosody range="{job.range_pct}%">{job.text}</prosody></speak>'
    cmd = [
        _ESPEAK,
        "-m",
        "-v",
        job.voice,
        "-s",
        str(job.rate),
        "-p",
        str(job.pitch),
        "-a",
        str(job.amplitude),
        "-g",
        str(job.gap),
        "--stdout",
        ssml,
    ]
    try:
        res = subprocess.run(cmd, capture_output=True, check=True)
    except FileNotFoundError as exc:  # pragma: no cover - checked up front
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)") from exc
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"espeak-ng failed for {job.file_name}: {exc.stderr.decode(errors='replace')}") from exc
    wav, sr = sf.read(io.BytesIO(res.stdout), dtype="float32", always_2d=True)
    x = wav.mean(axis=1) if wav.shape[1] > 1 else wav[:, 0]
    if sr != SAMPLE_RATE:
        x = soxr.resample(x, sr, SAMPLE_RATE)
    x = _trim(np.asarray(x, dtype=np.float64))
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > _MAX_PEAK:  # never clip (rare: resampling overshoot)
        x = x * (_MAX_PEAK / peak)
    pcm = np.clip(np.round(np.asarray(x, dtype=np.float64) * 32768.0), -32768, 32767)
    with atomic_path(audio_dir / job.file_name) as tmp:
        sf.write(tmp, pcm.astype(np.int16), SAMPLE_RATE, subtype="PCM_16", format="WAV")


def _check_sizes(n_train: int, n_dev: int, n_test: int) -> None:
    for name, n in (("n_train", n_train), ("n_dev", n_dev), ("n_test", n_test)):
        if isinstance(n, bool) or int(n) != n or n < 0:
            raise DemoSizeError(f"{name} must be a non-negative integer, got {n!r}")
    if n_train + n_dev + n_test == 0:
        raise DemoSizeError("the corpus must contain at least one utterance")


def demo_labels(*, n_train: int = 1200, n_dev: int = 200, n_test: int = 300, seed: int = 0) -> pd.DataFrame:
    """Return the label table that :func:`make_demo_corpus` would write.

    Cheap (no audio is synthesised); the columns are :data:`CSV_COLUMNS`.
    """
    _check_sizes(n_train, n_dev, n_test)
    df, _ = _plan(int(n_train), int(n_dev), int(n_test), int(seed))
    return df


def _write_csv_atomic(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.1f", lineterminator="\n")


def make_demo_corpus(
    out_dir: str | os.PathLike[str],
    *,
    n_train: int = 1200,
    n_dev: int = 200,
    n_test: int = 300,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Write a synthetic MSP-Podcast-style corpus and return its root.

    Layout: ``out_dir/Audios/DEMO_<spk>_<utt>.wav`` (16 kHz, mono, PCM_16) and
    ``out_dir/Labels/labels_consensus.csv`` with the columns
    :data:`CSV_COLUMNS`.  Speakers are disjoint across the ``Train``,
    ``Development`` and ``Test1`` splits.  Output is deterministic in
    ``seed``.  Each file is written under a temporary name and moved into
    place; the CSV is written last (any previous CSV is removed first), so an
    interrupted run never looks like a complete corpus.  Stale
    ``DEMO_*.wav`` files from an earlier run that are not part of this corpus,
    and temporary files of a killed run, are deleted.

    ``workers`` espeak-ng processes run concurrently (default
    ``min(4, os.cpu_count())``); they are driven from a thread pool, as the
    work is done in the espeak-ng child processes and in GIL-free
    resampling/encoding code.

    Raises:
        RuntimeError: if espeak-ng is not installed or fails.
        ValueError: on negative sizes or ``workers < 1``.
    """
    _check_sizes(n_train, n_dev, n_test)
    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    _check_espeak()

    root = Path(out_dir)
    audio_dir = root / "Audios"
    label_dir = root / "Labels"
    audio_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    csv_path = label_dir / "labels_consensus.csv"
    if csv_path.exists():
        csv_path.unlink()

    df, jobs = _plan(int(n_train), int(n_dev), int(n_test), int(seed))
    wanted = set(df["FileName"])
    for stale in audio_dir.glob("DEMO_*.wav"):
        if stale.name not in wanted:
            stale.unlink()
    # temporary files left behind by a killed run
    for leftover in [*audio_dir.glob(".DEMO_*.tmp"), *label_dir.glob(".labels_consensus.csv.*.tmp")]:
        leftover.unlink(missing_ok=True)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="demo corpus", unit="utt")
    try:
        if workers == 1:
            for job in jobs:
                _synthesise(job, audio_dir)
                if bar is not None:
                    bar.update(1)
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = [pool.submit(_synthesise, job, audio_dir) for job in jobs]
                try:
                    for fut in futures:
                        fut.result()
                        if bar is not None:
                            bar.update(1)
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
    finally:
        if bar is not None:
            bar.close()

    _write_csv_atomic(df, csv_path)
    return root
