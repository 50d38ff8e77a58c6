import os

import pandas as pd
import pytest

from emosphere.io import atomic_path, iter_table, read_table, table_writer, write_table


def test_outputs_get_ordinary_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "t.csv")
    finally:
        os.umask(umask)
    assert (tmp_path / "t.csv").stat().st_mode & 0o777 == 0o644


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "out.csv") as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_tables_round_trip(tmp_path, suffix):
    table = pd.DataFrame({"file": ["a.wav"], "arousal": [4.5]})
    write_table(table, tmp_path / f"t{suffix}")
    pd.testing.assert_frame_equal(read_table(tmp_path / f"t{suffix}"), table)
    with pytest.raises(ValueError, match="unknown table format"):
        write_table(table, tmp_path / "t.txt")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_tables_written_and_read_in_pieces(tmp_path, suffix):
    table = pd.DataFrame(
        {"file": ["a.wav", "b.wav", "c.wav"], "start": [10800.123456, 0.1, 2.0], "arousal": [4.123456789, 2.0, 3.0]}
    )
    with table_writer(tmp_path / f"t{suffix}", exact=["start"]) as write:
        write(table.iloc[:0])
        write(table.iloc[:2])
        assert not (tmp_path / f"t{suffix}").exists()  # complete only at the end
        write(table.iloc[2:])
    pieces = list(iter_table(tmp_path / f"t{suffix}", rows=2, columns=["file", "start"], text=["file"]))
    assert [len(p) for p in pieces] == [2, 1]
    back = pd.concat(pieces, ignore_index=True)
    assert back.file.tolist() == table.file.tolist() and back.start.tolist() == table.start.tolist()
    if suffix == ".csv":  # 6 significant digits, except the exact columns
        assert read_table(tmp_path / "t.csv").arousal[0] == 4.12346
    empty = tmp_path / f"empty{suffix}"
    with table_writer(empty) as write:
        write(table.iloc[:0])
    if suffix != ".jsonl":  # a JSON lines file without rows has no columns
        assert list(read_table(empty).columns) == list(table.columns)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_text_tables_are_utf8_and_keep_names_as_they_are(tmp_path, suffix):
    table = pd.DataFrame({"file": ["audio/café/01.wav", 'back\\slash/"quoted".wav'], "arousal": [4.5, 1.0]})
    write_table(table, tmp_path / f"t{suffix}")
    text = (tmp_path / f"t{suffix}").read_text(encoding="utf-8")
    assert "audio/café/01.wav" in text  # no \/ and no \u00e9 in JSON lines
    pd.testing.assert_frame_equal(read_table(tmp_path / f"t{suffix}"), table)
