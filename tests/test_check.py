from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import write_corpus

from emosphere.check import CorpusError, check_corpus
from emosphere.config import ConfigError, load_config
from emosphere.labels import LABEL_COLUMNS, Corpus, prepare_labels
from emosphere.manifest import write_manifest
from emosphere.preflight import preflight
from emosphere.sphere import RegionSet

TINY_RECIPE = Path(__file__).parents[1] / "recipes" / "demo" / "tiny.yaml"

SPLITS = {"Train": 12, "Development": 6, "Test1": 4}


@pytest.fixture
def broken(tmp_path):
    """A corpus with one of each problem, at known lines of the label file (line = row + 2)."""
    root = write_corpus(tmp_path / "c", SPLITS)
    labels = pd.read_csv(root / "Labels" / "labels_consensus.csv")
    labels["EmoClass"] = labels["EmoClass"].astype(object)
    labels.loc[0, "EmoVal"] = 9.0  # line 2
    labels.loc[1, "EmoAct"] = np.nan  # line 3
    labels.loc[3, "FileName"] = labels.loc[2, "FileName"]  # lines 4 and 5
    labels.loc[4, "Split_Set"] = np.nan  # line 6
    (root / "Audios" / labels.loc[5, "FileName"]).unlink()  # line 7: listed, not on disk
    (root / "Audios" / labels.loc[6, "FileName"]).write_bytes(b"not audio")  # line 8
    sf.write(root / "Audios" / labels.loc[7, "FileName"], np.zeros(100, np.float32), 16000)  # line 9: 6 ms
    labels.loc[12, "Split_Set"] = "Devlopment"  # line 14 (a Development row)
    labels.loc[13, "EmoClass"] = "Z"  # line 15
    labels.to_csv(root / "Labels" / "labels_consensus.csv", index=False)
    sf.write(root / "Audios" / "stray.wav", np.zeros(16000, np.float32), 16000)
    return root


def found(report, severity):
    rows = report.problems[report.problems["severity"] == severity]
    return {(problem, None if pd.isna(line) else int(line)) for problem, line in zip(rows["problem"], rows["line"])}


def test_every_problem_is_reported_at_once_with_its_line(broken):
    report = check_corpus(Corpus.at(broken), RegionSet(), progress=False)
    assert found(report, "error") == {
        ("EmoVal must be a number in [1, 7]", 2),
        ("EmoAct must be a number in [1, 7]", 3),
        ("FileName repeated", 4),
        ("FileName repeated", 5),
        ("Split_Set is empty", 6),
        ("listed audio file not found", 7),
        ("audio file unreadable", 8),
        ("audio shorter than the encoder's minimum input (400 samples at 16 kHz)", 9),
    }
    warnings = found(report, "warning")
    assert ("audio file on disk not in the label table", None) in warnings
    assert any(p.startswith("Split_Set not one of") and line == 14 for p, line in warnings)
    assert any(p.startswith("EmoClass not one of") and line == 15 for p, line in warnings)
    assert report.warnings["file"].str.endswith("stray.wav").any()
    with pytest.raises(CorpusError, match="8 problem"):
        report.raise_for_errors()


def test_a_run_checks_only_the_rows_it_reads(broken):
    # Test1 audio is missing, but a run on Train and Development does not read it.
    labels = pd.read_csv(broken / "Labels" / "labels_consensus.csv")
    (broken / "Audios" / labels.loc[labels["Split_Set"] == "Test1", "FileName"].iloc[0]).unlink()
    everything = check_corpus(Corpus.at(broken), RegionSet(), progress=False)
    run = check_corpus(Corpus.at(broken), RegionSet(), splits=("Train", "Development"), progress=False)
    assert len(everything.errors) == len(run.errors) + 1
    assert set(run.table["Split_Set"]) == {"Train", "Development"}
    assert set(run.table["EmoClass"]) <= set("ASHUFDCN")  # O and X dropped, as the run drops them
    empty = check_corpus(Corpus.at(broken), RegionSet(), splits=("Train", "Dev"), progress=False)
    assert empty.errors["problem"].str.contains("split 'Dev' has no usable labelled rows").any()


def test_a_clean_corpus_passes_and_is_summarised(tmp_path):
    root = write_corpus(tmp_path / "c", SPLITS)
    report = check_corpus(Corpus.at(root), RegionSet("sphere60"), splits=("Train", "Development"), progress=False)
    assert report.problems.empty
    report.raise_for_errors()
    summary = report.summary()
    for text in (
        "hours",
        "Train",
        "Development",
        "utterances per region (sphere60)",
        "origin",
        "utterances per EmoClass",
        "sample rates (Hz): 16000:",
    ):
        assert text in summary
    hours = report.table.groupby("Split_Set")["duration"].sum() / 3600
    assert f"{hours['Train']:.3f}" in summary


def test_the_checked_table_is_the_prepared_table(tmp_path):
    root = write_corpus(tmp_path / "c", SPLITS)
    report = check_corpus(
        Corpus.at(root), RegionSet("sphere45"), splits=("Train", "Development", "Test1"), progress=False
    )
    prepared = prepare_labels(Corpus.at(root), RegionSet("sphere45"), progress=False)
    pd.testing.assert_frame_equal(report.prepared[prepared.columns], prepared)


def test_decoding_finds_what_headers_cannot(tmp_path):
    root = write_corpus(tmp_path / "c", SPLITS)
    name = pd.read_csv(root / "Labels" / "labels_consensus.csv")["FileName"].iloc[0]
    samples = np.full(8000, 0.1, np.float32)
    samples[4000] = np.nan
    sf.write(root / "Audios" / name, samples, 16000, subtype="FLOAT")
    assert check_corpus(Corpus.at(root), RegionSet(), progress=False).problems.empty
    decoded = check_corpus(Corpus.at(root), RegionSet(), decode=True, progress=False)
    assert decoded.errors["detail"].str.contains("NaN").any()


def test_a_missing_audio_folder_is_one_error(tmp_path):
    root = write_corpus(tmp_path / "c", SPLITS)
    with pytest.raises(CorpusError, match="audio folder not found"):
        check_corpus(Corpus.at(root, audio_dir=tmp_path / "nowhere"), RegionSet(), progress=False)


def iemocap_like_manifest(root, path):
    """A manifest on 1-5 with IEMOCAP-like splits (Session1, Session2) over the corpus's audio."""
    labels = pd.read_csv(root / "Labels" / "labels_consensus.csv")
    table = pd.DataFrame(
        {
            "path": "Audios/" + labels["FileName"],
            **{d: (labels[c] - 1) / 6 * 4 + 1 for d, c in zip(("arousal", "valence", "dominance"), LABEL_COLUMNS)},
            "split": np.where(labels.index % 3, "Session1", "Session2"),
            "emotion": "neu",
            "scale_min": 1.0,
            "scale_max": 5.0,
        }
    )
    write_manifest(table, path)
    return table


def test_a_manifest_is_checked_as_the_msp_podcast_layout_is(tmp_path):
    root = write_corpus(tmp_path / "c", SPLITS)
    table = iemocap_like_manifest(root, root / "m.csv")
    (root / "Audios" / Path(table["path"].iloc[4]).name).unlink()  # line 6 of the manifest
    sf.write(root / "Audios" / "stray.wav", np.zeros(16000, np.float32), 16000)
    report = check_corpus(Corpus.manifest(root / "m.csv"), RegionSet(), splits=("Session1", "Session2"), progress=False)
    assert found(report, "error") == {("listed audio file not found", 6)}
    assert report.warnings.empty  # a manifest names its own splits, and lists what it uses
    assert "labels on the 1-5 scale (mapped onto the model's 1-7)" in report.summary()
    assert len(report.prepared) == len(table) - 1  # every listed row with audio, whatever its emotion


def test_training_preflight_reads_a_manifest_from_the_config(tmp_path, caplog):
    root = write_corpus(tmp_path / "c", SPLITS)
    iemocap_like_manifest(root, tmp_path / "m.parquet")
    config = load_config(
        TINY_RECIPE,
        [
            f"data.manifest={tmp_path / 'm.parquet'}",  # the recipe's data.corpus is not used
            f"data.audio_dir={root}",
            f"output_dir={tmp_path / 'run'}",
            "data.train_split=Session1",
            "data.dev_split=Session2",
        ],
    )
    report = preflight(config, progress=False)
    assert report.problems.empty and set(report.prepared["Split_Set"]) == {"Session1", "Session2"}
    assert "data.manifest is the corpus; not used: data.corpus=data/demo_corpus" in caplog.text
    corpus = Corpus.manifest(tmp_path / "m.parquet", root)
    prepared = prepare_labels(corpus, RegionSet(), progress=False)
    pd.testing.assert_frame_equal(report.prepared[prepared.columns], prepared)
    with pytest.raises(ConfigError, match="data.manifest: .*nowhere.csv: manifest not found"):
        preflight(load_config(TINY_RECIPE, [f"data.manifest={tmp_path / 'nowhere.csv'}"]))
