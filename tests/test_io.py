import os

import pandas as pd
import pytest

from emosphere.io import atomic_path, read_table, write_table


def test_outputs_get_ordinary_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "t.csv")
    finally:
        os.umask(umask)
    assert (tmp_path / "t.csv").stat().st_mode & 0o777 == 0o644


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "out.csv") as tmp:
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
