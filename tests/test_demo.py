"""Tests for the synthetic espeak-ng demo corpus (emosphere.demo); the speech itself: test_speech.py."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from emosphere import speech
from emosphere.demo import DemoCorpusError, demo_labels, make_demo_corpus
from emosphere.errors import UserError
from emosphere.labels import CONSENSUS_COLUMNS
from emosphere.speech import EspeakError

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

SPLITS = {"Train", "Development", "Test1"}
CLASSES = set("ASHUFDCNOX")
SR = 16_000


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~100-utterance corpus used for layout and label-dependence checks."""
    out = tmp_path_factory.mktemp("demo") / "corpus"
    return make_demo_corpus(out, n_train=80, n_dev=10, n_test=10, seed=0, progress=False)


@pytest.fixture(scope="module")
def labels(corpus: Path) -> pd.DataFrame:
    return pd.read_csv(corpus / "Labels" / "labels_consensus.csv")


@pytest.fixture(scope="module")
def small_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three small corpora: seed 0 twice (different worker counts), seed 1."""
    base = tmp_path_factory.mktemp("determinism")
    kw = {"n_train": 12, "n_dev": 6, "n_test": 6, "progress": False}
    return {
        "a": make_demo_corpus(base / "a", seed=0, workers=2, **kw),
        "b": make_demo_corpus(base / "b", seed=0, workers=1, **kw),
        "c": make_demo_corpus(base / "c", seed=1, workers=2, **kw),
    }


# --------------------------------------------------------------------------
# simple numpy features
# --------------------------------------------------------------------------
def _frames(x: np.ndarray, n: int, hop: int) -> np.ndarray:
    k = 1 + max(0, (len(x) - n) // hop)
    return x[np.arange(n)[None, :] + hop * np.arange(k)[:, None]]


def _features(x: np.ndarray) -> dict[str, float]:
    """Duration, speech time, active fraction, RMS dB and median log-F0."""
    n = 800  # 50 ms frames, 10 ms hop
    fr = _frames(x, n, 160)
    fr = fr - fr.mean(axis=1, keepdims=True)
    e_db = 10 * np.log10((fr**2).mean(axis=1) + 1e-12)
    active = e_db > e_db.max() - 30.0
    # Autocorrelation pitch, corrected for the analysis window (Boersma).
    win = np.hanning(n)
    spec = np.fft.rfft(fr * win, 2048, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, :n]
    wac = np.fft.irfft(np.abs(np.fft.rfft(win, 2048)) ** 2)[:n]
    ac = ac / np.maximum(ac[:, :1], 1e-12) / (wac / wac[0] + 1e-3)
    lo, hi = SR // 450, SR // 55
    lag = lo + np.argmax(ac[:, lo:hi], axis=1)
    peak = ac[np.arange(len(lag)), lag]
    voiced = active & (peak > 0.45)
    lf0 = np.log(SR / lag[voiced])
    med = np.median(lf0)
    # crude octave-error repair around the utterance median
    lf0 = np.where(lf0 > med + 0.5, lf0 - np.log(2), lf0)
    lf0 = np.where(lf0 < med - 0.5, lf0 + np.log(2), lf0)
    return {
        "dur": len(x) / SR,
        "speech_s": float(active.sum()) * 0.01,
        "active_frac": float(active.mean()),
        "rms_db": float(10 * np.log10(np.mean(x**2) + 1e-12)),
        "log_f0": float(np.median(lf0)),
    }


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(np.asarray(a, dtype=float)))
    rb = np.argsort(np.argsort(np.asarray(b, dtype=float)))
    return float(np.corrcoef(ra, rb)[0, 1])


def _partial_corr(a: np.ndarray, b: np.ndarray, control: np.ndarray) -> float:
    """Pearson correlation of a and b after linearly removing ``control``."""
    c = np.c_[np.ones(len(control)), np.asarray(control, dtype=float)]
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    ra = a - c @ np.linalg.lstsq(c, a, rcond=None)[0]
    rb = b - c @ np.linalg.lstsq(c, b, rcond=None)[0]
    return float(np.corrcoef(ra, rb)[0, 1])


@pytest.fixture(scope="module")
def feats(corpus: Path, labels: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for name in labels["FileName"]:
        x, _ = sf.read(corpus / "Audios" / name, dtype="float64")
        rows.append(_features(x))
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------
# layout and format
# --------------------------------------------------------------------------
def test_layout_and_columns(corpus: Path, labels: pd.DataFrame) -> None:
    assert (corpus / "Audios").is_dir()
    assert (corpus / "Labels" / "labels_consensus.csv").is_file()
    assert tuple(labels.columns) == CONSENSUS_COLUMNS
    assert list(labels.columns) == [
        "FileName",
        "EmoClass",
        "EmoAct",
        "EmoVal",
        "EmoDom",
        "SpkrID",
        "Gender",
        "Split_Set",
    ]
    assert len(labels) == 100
    assert labels["FileName"].is_unique
    assert all(re.fullmatch(r"DEMO_\d{4}_\d{4}\.wav", f) for f in labels["FileName"])
    on_disk = sorted(p.name for p in (corpus / "Audios").iterdir())
    assert on_disk == sorted(labels["FileName"])  # no temp files, nothing missing
    assert not [p for p in (corpus / "Labels").iterdir() if p.name.startswith(".")]
    assert pd.api.types.is_integer_dtype(labels["SpkrID"])
    assert set(labels["Gender"]) == {"Male", "Female"}
    assert set(labels["EmoClass"]) <= CLASSES
    assert set(labels["Split_Set"]) == SPLITS


def test_wavs_are_16k_mono_pcm16(corpus: Path, labels: pd.DataFrame) -> None:
    for name in labels["FileName"]:
        info = sf.info(corpus / "Audios" / name)
        assert info.samplerate == SR
        assert info.channels == 1
        assert info.subtype == "PCM_16"
        assert info.format == "WAV"
        x, _ = sf.read(corpus / "Audios" / name, dtype="float32")
        assert 1.0 <= len(x) / SR <= 6.5, name
        assert np.sqrt(np.mean(x**2)) > 1e-3, name  # not silent
        assert np.max(np.abs(x)) < 1.0, name


def test_splits_present_and_speakers_disjoint(labels: pd.DataFrame) -> None:
    counts = labels["Split_Set"].value_counts().to_dict()
    assert counts == {"Train": 80, "Development": 10, "Test1": 10}
    spk_splits = labels.groupby("SpkrID")["Split_Set"].nunique()
    assert (spk_splits == 1).all(), "a speaker appears in more than one split"
    assert (labels.groupby("SpkrID")["Gender"].nunique() == 1).all()
    for split in SPLITS:
        assert labels.loc[labels["Split_Set"] == split, "Gender"].nunique() == 2


def test_speakers_disjoint_default_size() -> None:
    df = demo_labels()
    assert len(df) == 1700
    assert (df.groupby("SpkrID")["Split_Set"].nunique() == 1).all()
    assert df.groupby("Split_Set")["SpkrID"].nunique().min() >= 5


def test_labels_in_range_and_rounded(labels: pd.DataFrame) -> None:
    vals = labels[["EmoAct", "EmoVal", "EmoDom"]].to_numpy()
    assert np.isfinite(vals).all()
    assert vals.min() >= 1.0 and vals.max() <= 7.0
    # rater-mean-like 0.2 steps
    np.testing.assert_allclose(vals * 5, np.round(vals * 5), atol=1e-6)


def test_label_distribution_resembles_msp_podcast() -> None:
    df = demo_labels(seed=3)
    avd = df[["EmoAct", "EmoVal", "EmoDom"]]
    means = avd.mean()
    assert ((means > 3.7) & (means < 4.6)).all()
    assert means["EmoVal"] > means["EmoAct"]  # valence slightly above
    assert ((avd.std() > 0.7) & (avd.std() < 1.4)).all()
    corr = avd.corr()
    assert 0.5 <= corr.loc["EmoAct", "EmoDom"] <= 0.8
    assert abs(corr.loc["EmoAct", "EmoVal"]) < 0.35
    assert abs(corr.loc["EmoVal", "EmoDom"]) < 0.35
    for col in avd:
        assert (avd[col] <= 1.6).any() and (avd[col] >= 6.4).any()  # extremes
    # every octant (4.0 counts as +) in every split
    octant = ((avd.to_numpy() >= 4.0) * np.array([4, 2, 1])).sum(axis=1)
    for split in SPLITS:
        present = set(octant[(df["Split_Set"] == split).to_numpy()])
        assert present == set(range(8)), split
    share = df["EmoClass"].value_counts(normalize=True)
    assert share.idxmax() == "N"
    assert 0.01 < share.get("O", 0) < 0.15 and 0.01 < share.get("X", 0) < 0.15
    assert set(share.index) == CLASSES


def test_emo_class_follows_avd() -> None:
    df = demo_labels(seed=0)
    core = df[~df["EmoClass"].isin(["O", "X"])]
    by = core.groupby("EmoClass")[["EmoAct", "EmoVal", "EmoDom"]].mean()
    assert by.loc["H", "EmoVal"] > 5 and by.loc["H", "EmoAct"] > 4
    assert by.loc["S", "EmoAct"] < 3.5 and by.loc["S", "EmoVal"] < 3.5
    assert by.loc["A", "EmoVal"] < 3.5 and by.loc["A", "EmoDom"] > 4.5
    dist = (core[["EmoAct", "EmoVal", "EmoDom"]] - 4.0).abs().max(axis=1)
    is_n = core["EmoClass"] == "N"
    assert is_n[dist < 0.8 - 1e-9].all()  # N near the middle
    assert dist[is_n].mean() < dist[~is_n].mean() - 0.5


# --------------------------------------------------------------------------
# determinism and robustness
# --------------------------------------------------------------------------
def _csv_bytes(root: Path) -> bytes:
    return (root / "Labels" / "labels_consensus.csv").read_bytes()


def _wav_bytes(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "Audios").glob("*.wav"))}


def test_same_seed_is_byte_identical(small_runs: dict[str, Path]) -> None:
    a, b = small_runs["a"], small_runs["b"]  # also different worker counts
    assert _csv_bytes(a) == _csv_bytes(b)
    wa, wb = _wav_bytes(a), _wav_bytes(b)
    assert len(wa) == 24
    assert wa.keys() == wb.keys()
    for name in wa:
        assert wa[name] == wb[name], name


def test_different_seed_differs(small_runs: dict[str, Path]) -> None:
    a, c = small_runs["a"], small_runs["c"]
    assert _csv_bytes(a) != _csv_bytes(c)
    la = pd.read_csv(a / "Labels" / "labels_consensus.csv")
    lc = pd.read_csv(c / "Labels" / "labels_consensus.csv")
    assert not np.array_equal(la[["EmoAct", "EmoVal", "EmoDom"]], lc[["EmoAct", "EmoVal", "EmoDom"]])
    wa, wc = _wav_bytes(a), _wav_bytes(c)
    common = wa.keys() & wc.keys()
    assert common
    assert sum(wa[k] != wc[k] for k in common) >= len(common) // 2


def test_rerun_replaces_previous_corpus(tmp_path: Path) -> None:
    root = make_demo_corpus(tmp_path / "c", n_train=4, n_dev=2, n_test=2, progress=False)
    (root / "Audios" / ".DEMO_0001_0001.wav.0123abcd.tmp").write_bytes(b"killed run")
    make_demo_corpus(root, n_train=2, n_dev=1, n_test=1, seed=5, progress=False)
    df = pd.read_csv(root / "Labels" / "labels_consensus.csv")
    assert len(df) == 4
    assert sorted(p.name for p in (root / "Audios").iterdir()) == sorted(df["FileName"])


def test_interrupted_run_leaves_no_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "c"
    (root / "Labels").mkdir(parents=True)
    stale = root / "Labels" / "labels_consensus.csv"
    stale.write_text("stale\n")
    real_run = subprocess.run
    calls = {"n": 0}

    def flaky_run(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 5:
            raise subprocess.CalledProcessError(1, args[0], b"", b"simulated crash")
        return real_run(*args, **kwargs)

    monkeypatch.setattr(speech.subprocess, "run", flaky_run)
    with pytest.raises(EspeakError, match="simulated crash"):
        make_demo_corpus(root, n_train=8, n_dev=2, n_test=2, workers=2, progress=False)
    assert not stale.exists(), "an interrupted run must not leave a complete-looking corpus"
    assert not list((root / "Labels").iterdir())
    assert not [p for p in (root / "Audios").iterdir() if not p.name.endswith(".wav")]


def test_missing_espeak_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speech, "ESPEAK", "espeak-ng-not-installed-xyz")
    with pytest.raises(EspeakError, match="apt-get install espeak-ng"):
        make_demo_corpus(tmp_path / "c", n_train=2, n_dev=1, n_test=1, progress=False)
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    "kwargs",
    [{"n_train": -1}, {"n_train": 0, "n_dev": 0, "n_test": 0}, {"workers": 0}, {"n_dev": 1.5}, {"n_test": True}],
)
def test_invalid_arguments(tmp_path: Path, kwargs: dict[str, int]) -> None:
    with pytest.raises(DemoCorpusError) as caught:
        make_demo_corpus(tmp_path / "c", progress=False, **kwargs)
    assert isinstance(caught.value, UserError) and isinstance(caught.value, ValueError)
    assert not (tmp_path / "c").exists()


# --------------------------------------------------------------------------
# the audio really depends on the labels
# --------------------------------------------------------------------------
def test_arousal_drives_speaking_rate(labels: pd.DataFrame, feats: pd.DataFrame) -> None:
    act, dom = labels["EmoAct"].to_numpy(), labels["EmoDom"].to_numpy()
    speech = feats["speech_s"].to_numpy()  # time with speech energy (no pauses)
    assert _spearman(-speech, act) > 0.6
    # own cue, not only via the A-D correlation
    assert _partial_corr(-np.log(speech), act, dom) > 0.5


def test_valence_drives_pitch(labels: pd.DataFrame, feats: pd.DataFrame) -> None:
    val = labels["EmoVal"].to_numpy()
    f0 = feats["log_f0"].to_numpy()
    male = (labels["Gender"] == "Male").to_numpy()
    for g in (male, ~male):
        assert _spearman(f0[g], val[g]) > 0.8
    assert _partial_corr(f0, val, male.astype(float)) > 0.8
    # and not through arousal or dominance
    assert abs(_partial_corr(f0, labels["EmoAct"].to_numpy(), np.c_[male, val])) < 0.4


def test_dominance_drives_pauses(labels: pd.DataFrame, feats: pd.DataFrame) -> None:
    dom, act = labels["EmoDom"].to_numpy(), labels["EmoAct"].to_numpy()
    frac = feats["active_frac"].to_numpy()  # less pausing -> more active frames
    assert _spearman(frac, dom) > 0.6
    assert _partial_corr(frac, dom, act) > 0.6


def test_loudness_rises_with_arousal_and_dominance(labels: pd.DataFrame, feats: pd.DataFrame) -> None:
    ad = (labels["EmoAct"] + labels["EmoDom"]).to_numpy()
    assert _spearman(feats["rms_db"].to_numpy(), ad) > 0.45
