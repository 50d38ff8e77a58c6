"""Comparing systems: the paired bootstrap of their CCC differences, from runs, models or tables."""

import shutil

import numpy as np
import pandas as pd
import pytest

from emosphere.cli import main
from emosphere.compare import compare_systems
from emosphere.errors import UserError
from emosphere.evaluate import Intervals


def table(seed: int, n: int = 40, noise: float = 0.5) -> pd.DataFrame:
    """A prediction table as evaluate writes it: predictions = labels + noise."""
    rng = np.random.default_rng(0)
    true = rng.uniform(1, 7, (n, 3))
    predicted = np.clip(true + np.random.default_rng(seed).normal(0, noise, (n, 3)), 1, 7)
    frame = pd.DataFrame(predicted, columns=["EmoAct", "EmoVal", "EmoDom"])
    frame[["true_EmoAct", "true_EmoVal", "true_EmoDom"]] = true
    frame.insert(0, "FileName", [f"f{i:03d}.wav" for i in range(n)])
    frame["SpkrID"] = np.arange(n) // 4
    return frame


def test_a_better_system_is_resolved_and_an_equal_one_is_not():
    good, bad = table(1, noise=0.2), table(2, noise=1.5)
    compared, markdown = compare_systems({"bad": bad, "good": good, "same": bad.copy()}, Intervals(resamples=300))
    mean = compared[compared["dimension"] == "mean"].set_index("system")
    assert mean.loc["good", "difference"] > 0 and mean.loc["good", "ci_low"] > 0 and mean.loc["good", "p_value"] < 0.05
    assert mean.loc["same", "difference"] == 0 and mean.loc["same", "p_value"] == 1
    assert "| good | bad | mean |" in markdown and "| yes |" in markdown and "| no |" in markdown


def test_speakers_are_resampled_whole_with_by_speaker():
    compared, _ = compare_systems({"a": table(1), "b": table(2)}, Intervals(by="speaker", resamples=50))
    assert set(compared["by"]) == {"speaker"} and set(compared["units"]) == {10}
    with pytest.raises(UserError, match="no SpkrID"):
        compare_systems({"a": table(1).drop(columns="SpkrID"), "b": table(2)}, Intervals(by="speaker"))


def test_the_cli_compares_tables_and_refuses_files_one_side_lacks(tmp_path, capsys):
    table(1).to_csv(tmp_path / "a.csv", index=False)
    table(2).to_csv(tmp_path / "b.csv", index=False)
    table(3).iloc[1:].to_csv(tmp_path / "short.csv", index=False)
    args = ["compare", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--resamples", "100"]
    assert main([*args, "--output", str(tmp_path / "out")]) == 0
    assert "| system | reference |" in capsys.readouterr().out
    written = pd.read_csv(tmp_path / "out" / "comparison.csv")
    assert written["dimension"].tolist() == ["arousal", "valence", "dominance", "mean"]
    assert (tmp_path / "out" / "comparison.md").is_file()
    assert main(["compare", str(tmp_path / "a.csv"), str(tmp_path / "short.csv")]) == 2
    assert "lacks 1 (f000.wav)" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "a.csv")]) == 2


def test_runs_are_evaluated_on_the_split_once(trained_run, tmp_path, capsys):
    for name in ("one", "two"):
        shutil.copytree(trained_run, tmp_path / name)
    model = str(tmp_path / "two" / "model")  # a run's model directory stands for its run
    assert main(["compare", str(tmp_path / "one"), model, "--split", "Test1", "--resamples", "50"]) == 0
    assert (tmp_path / "one" / "eval_Test1" / "metrics.json").is_file()
    assert (tmp_path / "two" / "eval_Test1" / "metrics.json").is_file()
    assert "+0.000" in capsys.readouterr().out  # the same model twice: no difference
