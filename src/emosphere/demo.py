"""Synthetic MSP-Podcast-style demo corpus, spoken by espeak-ng (:mod:`emosphere.speech`).

The demo corpus lets the whole pipeline (data loading, training, evaluation,
export) run on a fresh machine without the real MSP-Podcast data. It is written
in the MSP-Podcast layout (``Audios/*.wav``, ``Labels/labels_consensus.csv``
with :data:`emosphere.labels.CONSENSUS_COLUMNS`), so the normal loaders read it
unchanged; docs/demo_corpus.md describes it, with measurements.

Labels
    Arousal (A), valence (V) and dominance (D) are rater-mean-like values on
    the 1-7 scale.  About 90 % of the rows come from a correlated Gaussian
    (means A 4.1, V 4.3, D 4.15; SDs 0.95 / 1.05 / 0.85; corr A-D 0.75, A-V
    0.12, V-D 0.18), the remaining ~10 % ("corner" rows) are spread over all
    eight octants around (4, 4, 4) with values up to the scale ends.  Values
    are clipped to [1, 7] and rounded to 0.2 steps (five-rater means).
    ``EmoClass`` is the nearest categorical prototype (always ``N`` within 0.8
    of the centre on every axis; the neutral prototype (4, 4.2, 4) also
    competes further out); 4 % of rows are relabelled ``O`` (other) and 6 %
    ``X`` (no agreement).  Each label point is spoken with the prosody of
    :func:`emosphere.speech.label_to_prosody`.

Speakers and splits
    Nuisance factors, independent of the labels: twelve espeak-ng voice
    variants (``en+m1``..``en+m7``, ``en+f1``..``en+f5``), a per-speaker pitch
    offset (+-3 ``-p`` units) and rate factor (0.94-1.06), and 64 neutral
    sentences in shuffled rounds.  A split of ``n`` rows has ``max(2, round(n /
    40))`` speakers of alternating gender, with its utterances spread evenly
    over them; every speaker belongs to exactly one split.

Determinism and atomic writes
    The output is a pure function of the arguments: the same ``seed`` gives
    byte-identical CSV and WAV files, whatever the number of workers.  Every
    file is written under a temporary name and moved into place; the CSV is
    removed first and written last, so an interrupted run never looks like a
    complete corpus.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import UserError
from .io import atomic_path
from .labels import CONSENSUS_COLUMNS
from .speech import EspeakSettings, check_espeak, espeak_settings, label_to_prosody, synthesise

SPLITS = ("Train", "Development", "Test1")
LABELS_FILE = Path("Labels", "labels_consensus.csv")
"""The label table, relative to the corpus root; the audio is in ``Audios/``."""
VOICES = tuple((f"m{k}", "Male") for k in range(1, 8)) + tuple((f"f{k}", "Female") for k in range(1, 6))
"""espeak-ng English voice variants (``en+<variant>``) used as speakers, with the gender they represent."""
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
"""Emotionally neutral sentences (about 8-12 syllables, 1.5-4 s spoken)."""

LABEL_MEAN = np.array([4.10, 4.30, 4.15])
LABEL_SD = np.array([0.95, 1.05, 0.85])
LABEL_CORR = np.array([[1.00, 0.12, 0.75], [0.12, 1.00, 0.18], [0.75, 0.18, 1.00]])
"""Mean, standard deviations and correlations (A, V, D) of the Gaussian most rows come from."""
CORNER_FRACTION = 0.10
"""Share of the rows spread over the octants instead (at least eight per split)."""
CORNER_MAGNITUDE = (0.4, 3.0)
"""Distance of a corner row from 4 on each axis: beyond the rounding step, out to the scale ends."""
OTHER_SHARE, NO_AGREEMENT_SHARE = 0.04, 0.06
"""Shares of the rows relabelled ``O`` and ``X``."""
NEUTRAL_RADIUS = 0.8
"""A point within this of 4 on every axis is ``N``."""
PROTOTYPES: dict[str, tuple[float, float, float]] = {
    "A": (5.8, 2.4, 5.6),  # angry
    "S": (2.6, 2.6, 3.0),  # sad
    "H": (5.3, 5.9, 4.9),  # happy
    "U": (6.0, 4.8, 3.6),  # surprise
    "F": (5.4, 2.6, 2.8),  # fear
    "D": (4.4, 2.5, 4.6),  # disgust
    "C": (3.4, 3.1, 5.2),  # contempt
    "N": (4.0, 4.2, 4.0),  # neutral
}
"""Categorical prototypes (A, V, D); ``EmoClass`` is the nearest one."""

SPEAKER_PITCH_OFFSET = 3.0
"""A speaker's pitch offset is uniform in +-this (``-p`` units)."""
SPEAKER_RATE_FACTOR = 0.06
"""A speaker's rate factor is uniform in 1 +- this."""
UTTERANCES_PER_SPEAKER = 40
SEED_SALT = 0x5E12
"""The random generator starts from ``SeedSequence([seed, SEED_SALT])``; another salt, another corpus."""


class DemoCorpusError(UserError, ValueError):
    """Arguments that make no corpus: a size that is not a non-negative integer, no utterance at all,
    or fewer than one worker."""


@dataclass(frozen=True)
class _Speaker:
    spkr_id: int
    voice: str
    gender: str
    pitch_offset: float
    rate_factor: float


@dataclass(frozen=True)
class _Job:
    """One utterance to synthesise into ``Audios/<file_name>``."""

    file_name: str
    text: str
    settings: EspeakSettings


def _sample_labels(rng: np.random.Generator, n: int) -> np.ndarray:
    """Draw ``n`` (A, V, D) rows on the 1-7 scale (see the module docstring)."""
    if n <= 0:
        return np.zeros((0, 3))
    cov = LABEL_CORR * np.outer(LABEL_SD, LABEL_SD)
    n_corner = min(n, max(int(round(CORNER_FRACTION * n)), 8))
    base = rng.multivariate_normal(LABEL_MEAN, cov, size=n - n_corner, method="cholesky")
    # Corner rows: the first eight cycle through all octants (so that a split of eight rows or more
    # covers every octant), the rest favour octants where arousal and dominance agree, as in real data.
    octants = np.array([[(k >> 2) & 1, (k >> 1) & 1, k & 1] for k in range(8)])
    weights = np.where(octants[:, 0] == octants[:, 2], 3.0, 1.0)
    weights /= weights.sum()
    idx = np.concatenate([np.arange(min(8, n_corner)), rng.choice(8, size=max(n_corner - 8, 0), p=weights)])
    signs = np.where(octants[idx] == 1, 1.0, -1.0)
    corner = 4.0 + signs * rng.uniform(*CORNER_MAGNITUDE, size=signs.shape)
    labels = np.concatenate([base, corner])[rng.permutation(n)]
    return np.clip(np.round(labels * 5.0) / 5.0, 1.0, 7.0)


def _emo_class(avd: np.ndarray, draw: float) -> str:
    """``O`` or ``X`` for their shares of the uniform ``draw``, else ``N`` near the centre, else the
    nearest prototype's class."""
    if draw < OTHER_SHARE:
        return "O"
    if draw < OTHER_SHARE + NO_AGREEMENT_SHARE:
        return "X"
    if np.max(np.abs(avd - 4.0)) < NEUTRAL_RADIUS:
        return "N"
    names = list(PROTOTYPES)
    protos = np.array([PROTOTYPES[k] for k in names])
    return names[int(np.argmin(((protos - avd) ** 2).sum(axis=1)))]


def _voice_cycles(rng: np.random.Generator) -> dict[str, Iterator[str]]:
    """Each gender's voice variants in one random order (the male one drawn first), repeated."""
    return {
        gender: itertools.cycle([str(v) for v in rng.permutation([v for v, g in VOICES if g == gender])])
        for gender in ("Male", "Female")
    }


class _Sentences:
    """The sentences in shuffled rounds; the next round's order is drawn as soon as a round ends."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.order = rng.permutation(len(SENTENCES))
        self.used = 0

    def next(self) -> str:
        text = SENTENCES[int(self.order[self.used % len(SENTENCES)])]
        self.used += 1
        if self.used % len(SENTENCES) == 0:
            self.order = self.rng.permutation(len(SENTENCES))
        return text


def _n_speakers(n: int) -> int:
    return min(n, max(2, int(round(n / UTTERANCES_PER_SPEAKER))))  # none for no rows


def _speakers(rng: np.random.Generator, n: int, first_id: int, voices: dict[str, Iterator[str]]) -> list[_Speaker]:
    """The speakers of a split of ``n`` rows, numbered from ``first_id``, alternating gender from a
    random first one."""
    first_gender = int(rng.integers(2))
    speakers = []
    for k in range(_n_speakers(n)):
        gender = "Male" if (k + first_gender) % 2 == 0 else "Female"
        pitch_offset = float(rng.uniform(-SPEAKER_PITCH_OFFSET, SPEAKER_PITCH_OFFSET))
        rate_factor = float(1.0 + rng.uniform(-SPEAKER_RATE_FACTOR, SPEAKER_RATE_FACTOR))
        speakers.append(_Speaker(first_id + k, next(voices[gender]), gender, pitch_offset, rate_factor))
    return speakers


def _plan_split(
    rng: np.random.Generator, split: str, n: int, speakers: list[_Speaker], sentences: _Sentences
) -> tuple[list[tuple], list[_Job]]:
    """The label rows (in :data:`CONSENSUS_COLUMNS` order) and utterances of a split of ``n`` rows."""
    labels = _sample_labels(rng, n)
    speaker_of = rng.permutation(np.arange(n) % max(len(speakers), 1))  # balanced, in random order
    counts = [0] * len(speakers)
    rows: list[tuple] = []
    jobs: list[_Job] = []
    for avd, k in zip(labels, speaker_of.tolist()):
        speaker = speakers[k]
        counts[k] += 1
        file_name = f"DEMO_{speaker.spkr_id:04d}_{counts[k]:04d}.wav"
        emo_class = _emo_class(avd, rng.random())
        act, val, dom = (float(x) for x in avd)
        prosody = label_to_prosody(act, val, dom, speaker.gender)
        settings = espeak_settings(prosody, f"en+{speaker.voice}", speaker.pitch_offset, speaker.rate_factor)
        jobs.append(_Job(file_name, sentences.next(), settings))
        labels_row = (round(act, 1), round(val, 1), round(dom, 1))
        rows.append((file_name, emo_class, *labels_row, speaker.spkr_id, speaker.gender, split))
    return rows, jobs


def _plan(n_train: int, n_dev: int, n_test: int, seed: int) -> tuple[pd.DataFrame, list[_Job]]:
    """The label table and the utterances to synthesise.

    The random draws come in a fixed order (any change changes every corpus): the male and female
    voice orders, the first sentence order; then per split its first gender, two uniforms per
    speaker, the labels, the speaker order, and per utterance one uniform (O/X) and, after every
    round of the sentences, the next sentence order."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, SEED_SALT]))
    voices = _voice_cycles(rng)
    sentences = _Sentences(rng)
    rows: list[tuple] = []
    jobs: list[_Job] = []
    next_id = 1
    for split, n in zip(SPLITS, (n_train, n_dev, n_test)):
        speakers = _speakers(rng, n, next_id, voices)
        next_id += len(speakers)
        split_rows, split_jobs = _plan_split(rng, split, n, speakers, sentences)
        rows += split_rows
        jobs += split_jobs
    return pd.DataFrame(rows, columns=list(CONSENSUS_COLUMNS)), jobs


def _check_sizes(n_train: int, n_dev: int, n_test: int) -> None:
    for name, n in (("n_train", n_train), ("n_dev", n_dev), ("n_test", n_test)):
        if isinstance(n, bool) or int(n) != n or n < 0:
            raise DemoCorpusError(f"{name} must be a non-negative integer, got {n!r}")
    if n_train + n_dev + n_test == 0:
        raise DemoCorpusError("the corpus must contain at least one utterance")


def demo_labels(*, n_train: int = 1200, n_dev: int = 200, n_test: int = 300, seed: int = 0) -> pd.DataFrame:
    """Return the label table that :func:`make_demo_corpus` would write.

    Cheap (no audio is synthesised); the columns are :data:`emosphere.labels.CONSENSUS_COLUMNS`.
    """
    _check_sizes(n_train, n_dev, n_test)
    table, _ = _plan(int(n_train), int(n_dev), int(n_test), int(seed))
    return table


def _clear(root: Path, wanted: set[str]) -> None:
    """Make the corpus folders and remove what is not this corpus: the label table (written again
    last), ``DEMO_*.wav`` files not in ``wanted`` and the temporary files of a killed run."""
    audio, labels = root / "Audios", root / LABELS_FILE
    audio.mkdir(parents=True, exist_ok=True)
    labels.parent.mkdir(parents=True, exist_ok=True)
    labels.unlink(missing_ok=True)
    for stale in audio.glob("DEMO_*.wav"):
        if stale.name not in wanted:
            stale.unlink()
    for leftover in [*audio.glob(".DEMO_*.tmp"), *labels.parent.glob(f".{labels.name}.*.tmp")]:
        leftover.unlink(missing_ok=True)


def _synthesise_all(jobs: list[_Job], audio_dir: Path, workers: int, progress: bool) -> None:
    """Synthesise every job, ``workers`` at a time; on a failure, cancel the jobs not yet started."""
    from tqdm.auto import tqdm

    with tqdm(total=len(jobs), desc="demo corpus", unit="utt", disable=not progress) as bar:
        if workers == 1:
            for job in jobs:
                synthesise(job.text, job.settings, audio_dir / job.file_name)
                bar.update(1)
            return
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(synthesise, job.text, job.settings, audio_dir / job.file_name) for job in jobs]
            try:
                for future in futures:
                    future.result()
                    bar.update(1)
            except BaseException:
                for future in futures:
                    future.cancel()
                raise


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
    ``out_dir/Labels/labels_consensus.csv``; speakers are disjoint across the
    ``Train``, ``Development`` and ``Test1`` splits; the output is deterministic in
    ``seed``.  Every file is written atomically, the CSV last (any previous CSV is
    removed first), so an interrupted run never looks like a complete corpus.
    ``DEMO_*.wav`` files from an earlier run that are not part of this corpus,
    and temporary files of a killed run, are deleted.

    ``workers`` espeak-ng processes run concurrently (default
    ``min(4, os.cpu_count())``), driven from a thread pool: the work is done in
    the espeak-ng child processes and in GIL-free resampling and encoding code.
    ``progress`` shows a progress bar.

    Raises:
        emosphere.speech.EspeakError: if espeak-ng is not installed or fails.
        DemoCorpusError: on negative sizes, no utterance at all or ``workers < 1``.
    """
    _check_sizes(n_train, n_dev, n_test)
    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    if workers < 1:
        raise DemoCorpusError(f"workers must be >= 1, got {workers}")
    check_espeak()
    root = Path(out_dir)
    table, jobs = _plan(int(n_train), int(n_dev), int(n_test), int(seed))
    _clear(root, set(table["FileName"]))
    _synthesise_all(jobs, root / "Audios", workers, progress)
    with atomic_path(root / LABELS_FILE) as tmp:
        table.to_csv(tmp, index=False, float_format="%.1f", lineterminator="\n")
    return root
