import numpy as np
import pandas as pd
import pytest

from emosphere.labels import (
    LABEL_COLUMNS,
    Corpus,
    LabelError,
    counts,
    prepare_labels,
    read_consensus,
    split,
    table_scale,
)
from emosphere.manifest import write_manifest
from emosphere.metrics import regression_metrics
from emosphere.sphere import DIMENSIONS, MODEL_SCALE, RegionSet, Scale, from_unit


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


def msp_manifest(corpus, path, scale, **changes):
    """The corpus's labelled rows as a manifest, its labels mapped linearly from 1-7 onto ``scale``."""
    labels = pd.read_csv(corpus / "Labels" / "labels_consensus.csv")
    labels = labels[labels["EmoClass"].isin(list("ASHUFDCN"))]
    low, high = scale
    table = pd.DataFrame(
        {
            "name": labels["FileName"],
            "path": "Audios/" + labels["FileName"],
            **{d: (labels[c] - 1) / 6 * (high - low) + low for d, c in zip(DIMENSIONS, LABEL_COLUMNS)},
            "split": labels["Split_Set"],
            "speaker": labels["SpkrID"],
            "scale_min": low,
            "scale_max": high,
        }
    ).assign(**changes)
    write_manifest(table, path)
    return Corpus.manifest(path, audio_dir=corpus)


def test_a_corpus_on_1_5_scores_as_the_same_data_rescaled_by_hand_to_1_7(corpus, tmp_path):
    five = prepare_labels(msp_manifest(corpus, tmp_path / "five.csv", (1, 5)), RegionSet("sphere30"), progress=False)
    by_hand = pd.read_csv(tmp_path / "five.csv")
    for column in DIMENSIONS:
        by_hand[column] = (by_hand[column] - 1) * 6 / 4 + 1
    write_manifest(by_hand.assign(scale_max=7.0), tmp_path / "seven.csv")
    seven = prepare_labels(Corpus.manifest(tmp_path / "seven.csv", corpus), RegionSet("sphere30"), progress=False)
    assert table_scale(five) == Scale(1, 5) and table_scale(seven) == MODEL_SCALE
    np.testing.assert_allclose(five[list(DIMENSIONS)], seven[list(DIMENSIONS)], rtol=0, atol=1e-12)
    assert (five["region"] == seven["region"]).all()
    predicted = np.random.default_rng(0).uniform(0.1, 0.9, (len(five), 3))  # a model's [0, 1] outputs
    on_model_scale = regression_metrics(from_unit(predicted), five[list(LABEL_COLUMNS)].to_numpy())
    by_hand_ccc = regression_metrics(from_unit(predicted), seven[list(LABEL_COLUMNS)].to_numpy())
    scale = table_scale(five)  # reported on the corpus's own scale
    on_corpus_scale = regression_metrics(scale.from_unit(predicted), scale.from_model(five[list(LABEL_COLUMNS)]))
    for name in by_hand_ccc:
        assert on_model_scale[name] == pytest.approx(by_hand_ccc[name], abs=1e-9)
        assert on_corpus_scale[name] == pytest.approx(by_hand_ccc[name], abs=1e-9)


def test_a_manifest_row_without_audio_is_dropped_with_a_warning(corpus, tmp_path, caplog):
    source = msp_manifest(corpus, tmp_path / "m.csv", (1, 5))
    table = pd.read_csv(source.labels)
    table.loc[0, "path"] = "Audios/missing.wav"
    write_manifest(table, source.labels)
    prepared = prepare_labels(source, RegionSet(), progress=False)
    assert "missing.wav" in caplog.text and len(prepared) == len(table) - 1


def test_an_msp_podcast_layout_on_another_scale_is_mapped(corpus, tmp_path):
    labels = pd.read_csv(corpus / "Labels" / "labels_consensus.csv")
    labels[list(LABEL_COLUMNS)] = (labels[list(LABEL_COLUMNS)] - 1) / 6 * 4 + 1
    original, labels.loc[2, "EmoDom"] = labels.loc[2, "EmoDom"], 6.0  # line 4: off the 1-5 scale
    labels.to_csv(tmp_path / "five.csv", index=False)
    with pytest.raises(LabelError, match=r"EmoDom must be a number in \[1, 5\]; bad value on line\(s\) \[4\]"):
        prepare_labels(Corpus.at(corpus, labels=tmp_path / "five.csv", scale=Scale(1, 5)), RegionSet(), progress=False)
    labels.loc[2, "EmoDom"] = original
    labels.to_csv(tmp_path / "five.csv", index=False)
    five = prepare_labels(Corpus.at(corpus, tmp_path / "five.csv", scale=Scale(1, 5)), RegionSet(), progress=False)
    direct = prepare_labels(Corpus.at(corpus), RegionSet(), progress=False)
    assert table_scale(five) == Scale(1, 5)
    np.testing.assert_allclose(five[list(DIMENSIONS)], direct[list(DIMENSIONS)], rtol=0, atol=1e-12)


def test_a_command_corpus_argument_is_a_folder_or_a_manifest(tmp_path):
    assert Corpus.open(tmp_path).layout == "msp-podcast"
    opened = Corpus.open(tmp_path / "m.parquet", scale=Scale(1, 5))
    assert (opened.layout, opened.labels, opened.audio_dir, opened.scale) == (
        "manifest",
        tmp_path / "m.parquet",
        tmp_path,
        Scale(1, 5),
    )
    with pytest.raises(LabelError, match="a manifest is its own label table"):
        Corpus.open(tmp_path / "m.csv", labels=tmp_path / "l.csv")
