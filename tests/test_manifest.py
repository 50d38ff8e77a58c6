import pandas as pd
import pytest

from emosphere.io import TableFormatError
from emosphere.labels import CONSENSUS_COLUMNS
from emosphere.manifest import read_manifest, scan_manifest, write_manifest
from emosphere.problems import LabelError
from emosphere.sphere import Scale


def manifest(rows=4, **columns):
    table = pd.DataFrame(
        {
            "path": [f"audio/u{i}.wav" for i in range(rows)],
            "arousal": [1.0, 2.0, 3.0, 5.0][:rows],
            "valence": 3.0,
            "dominance": [1.5, 2.5, 4.5, 5.0][:rows],
            "split": ["Train", "Train", "Development", "Test"][:rows],
        }
    )
    return table.assign(**columns)


def found(problems):
    return {(problem, int(line)) for problem, line in zip(problems["problem"], problems["line"])}


def test_a_manifest_reads_into_the_msp_podcast_columns_with_labels_on_1_7(tmp_path):
    path = tmp_path / "m.csv"
    manifest(name=["a", "b", "c", "d"], speaker=[3, 3, 4, 5], session=[1, 1, 2, 2]).to_csv(path, index=False)
    table, problems = scan_manifest(path, scale=Scale(1, 5))
    assert problems.empty
    assert table.columns[:8].tolist() == list(CONSENSUS_COLUMNS)
    assert table["FileName"].tolist() == ["a", "b", "c", "d"]
    assert table["EmoAct"].tolist() == [1.0, 2.5, 4.0, 7.0]  # 1-5 mapped: 1 -> 1, 3 -> 4, 5 -> 7
    assert table["EmoVal"].tolist() == [4.0] * 4
    assert table["SpkrID"].tolist() == [3, 3, 4, 5] and table["session"].tolist() == [1, 1, 2, 2]
    assert table["path"].iloc[0] == str(tmp_path / "audio" / "u0.wav")  # relative to the manifest's folder
    assert table["EmoClass"].isna().all() and table["Gender"].isna().all()
    assert table["scale_min"].tolist() == [1.0] * 4 and table["scale_max"].tolist() == [5.0] * 4


def test_paths_start_from_the_audio_folder_when_given_and_names_default_to_paths(tmp_path):
    path = tmp_path / "m.parquet"
    table = manifest(scale_min=1.0, scale_max=5.0)
    table.loc[1, "path"] = "/elsewhere/x.wav"
    table.to_parquet(path)
    read, _ = scan_manifest(path, audio_dir=tmp_path / "corpus")
    assert read["path"].tolist()[:2] == [str(tmp_path / "corpus" / "audio" / "u0.wav"), "/elsewhere/x.wav"]
    assert read["FileName"].tolist()[:2] == ["audio/u0.wav", "/elsewhere/x.wav"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_every_bad_row_is_reported_with_its_line(tmp_path, suffix):
    table = manifest(rows=4, name=["a", "b", "c", "c"])
    table["arousal"] = table["arousal"].astype(object)
    table.loc[0, "arousal"] = "high"  # line 2
    table.loc[1, "dominance"] = 6.0  # line 3: off the 1-5 scale
    table.loc[2, "split"] = None  # line 4
    path = tmp_path / f"m{suffix}"
    if suffix == ".csv":
        table.to_csv(path, index=False)
    else:
        table.astype({"arousal": str}).to_parquet(path)
    _, problems = scan_manifest(path, scale=Scale(1, 5))
    assert found(problems) == {
        ("arousal must be a number in [1, 5]", 2),
        ("dominance must be a number in [1, 5]", 3),
        ("split is empty", 4),
        ("name repeated", 4),
        ("name repeated", 5),
    }
    assert (problems["file"] == str(path)).all()


def test_a_manifest_without_a_column_or_a_scale_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "m.csv"
    manifest().drop(columns="split").to_csv(path, index=False)
    with pytest.raises(LabelError, match=r"m.csv: missing columns \['split'\]"):
        read_manifest(path)
    manifest().to_csv(path, index=False)
    with pytest.raises(LabelError, match=r"m.csv: no rating scale.*data.scale: \[1, 5\]"):
        scan_manifest(path)
    with pytest.raises(LabelError, match=r"a manifest is a table: .csv, .jsonl, .ndjson, .parquet"):
        scan_manifest(tmp_path / "m.txt", scale=Scale(1, 5))


def test_one_scale_per_manifest(tmp_path):
    path = tmp_path / "m.csv"
    manifest(scale_min=1, scale_max=[5, 5, 7, 5]).to_csv(path, index=False)
    _, problems = scan_manifest(path)
    assert found(problems) == {("scale_min, scale_max differ from the first row's [1, 5]: one scale per manifest", 4)}
    _, problems = scan_manifest(path, scale=Scale(1, 7))  # declared: the rows that disagree are the others
    assert {line for _, line in found(problems)} == {2, 3, 5}
    assert problems["problem"].str.contains(r"the declared scale \[1, 7\]").all()
    manifest(scale_min=1).to_csv(path, index=False)
    with pytest.raises(LabelError, match="scale_min without its pair"):
        scan_manifest(path)


def test_a_written_manifest_reads_back_exactly(tmp_path):
    table = manifest(speaker=["s1", "s1", "s2", "s3"], scale_min=1.0, scale_max=5.0)
    table["arousal"] = [1 + 1 / 3, 2 / 3 + 2, 4.123456789, 5.0]
    write_manifest(table, tmp_path / "m.csv")
    pd.testing.assert_frame_equal(
        read_manifest(tmp_path / "m.csv"), table, check_dtype=False, check_exact=True
    )  # 3.0 reads as 3
    write_manifest(table, tmp_path / "m.jsonl")  # JSON lines keep 15 significant digits
    pd.testing.assert_frame_equal(read_manifest(tmp_path / "m.jsonl"), table, check_dtype=False, rtol=1e-14)
    with pytest.raises(TableFormatError, match=r"a manifest is a table: .csv, .jsonl"):
        write_manifest(table, tmp_path / "m.txt")
