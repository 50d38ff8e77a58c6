import pandas as pd
import pytest

from emosphere.labels import Corpus, LabelError, counts, prepare_labels, read_consensus, split
from emosphere.sphere import RegionSet


def test_prepare_drops_other_unless_asked(corpus):
    strict = prepare_labels(Corpus.at(corpus), RegionSet(), progress=False)
    assert set(strict["EmoClass"]) <= set("ASHUFDCN")
    loose = prepare_labels(Corpus.at(corpus), RegionSet(), keep_other=True, progress=False)
    assert {"O", "X"} <= set(loose["EmoClass"]) and len(loose) > len(strict)


def test_prepared_columns(corpus):
    table = prepare_labels(Corpus.at(corpus), RegionSet("sphere45"), progress=False)
    for column in ("arousal", "valence", "dominance", "r", "theta", "phi", "region", "region_name", "path", "duration"):
        assert column in table
    assert table["arousal"].between(0, 1).all()
    assert table["region"].between(0, 32).all()
    assert (table["duration"] > 0.2).all()
    row = table.iloc[0]
    assert row["arousal"] == pytest.approx((row["EmoAct"] - 1) / 6)


def test_rows_without_audio_are_dropped_with_a_warning(tmp_path, corpus, caplog):
    labels = pd.read_csv(corpus / "Labels" / "labels_consensus.csv")
    labels.loc[0, "FileName"] = "missing.wav"
    labels.loc[1, "EmoAct"] = float("nan")
    labels.loc[1, "Split_Set"] = "Test3"
    labels.to_csv(tmp_path / "labels.csv", index=False)
    table = prepare_labels(
        Corpus.at(corpus, labels=tmp_path / "labels.csv"), RegionSet(), keep_other=True, progress=False
    )
    assert "missing.wav" in caplog.text
    assert len(table) == len(labels) - 2


@pytest.mark.parametrize(
    "column, value, message",
    [
        ("EmoVal", 9.0, "EmoVal.*line"),
        ("EmoAct", "high", "EmoAct.*line"),
    ],
)
def test_bad_labels_name_the_column_and_line(tmp_path, corpus, column, value, message):
    labels = pd.read_csv(corpus / "Labels" / "labels_consensus.csv")
    labels[column] = labels[column].astype(object)
    labels.loc[3, column] = value
    labels.to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(LabelError, match=message) as error:
        read_consensus(tmp_path / "labels.csv")
    assert "[5]" in str(error.value)  # data row 3 is line 5 of the file


def test_missing_columns_are_named(tmp_path):
    (tmp_path / "labels.csv").write_text("FileName,EmoAct\na.wav,3\n")
    with pytest.raises(LabelError, match="EmoVal"):
        read_consensus(tmp_path / "labels.csv")


def test_split_and_counts(corpus):
    regions = RegionSet()
    table = prepare_labels(Corpus.at(corpus), regions, progress=False)
    assert set(split(table, "Train")["Split_Set"]) == {"Train"}
    with pytest.raises(LabelError, match="Development"):
        split(table, "Test2")
    grid = counts(table, regions)
    assert list(grid.index[:8]) == regions.class_names
    assert grid.loc["total", "total"] == len(table)
