"""Run directories: their layout, the logged curves across resumes, and a run that reads the same from
any working directory."""

import os
import shutil

import pandas as pd
import pytest
from conftest import train_args

from emosphere.cli import main
from emosphere.errors import UserError
from emosphere.rundir import RunDir, epoch_metrics


def test_a_missing_or_foreign_folder_is_named(tmp_path):
    with pytest.raises(UserError, match="no such run directory"):
        RunDir.open(tmp_path / "nothing")
    with pytest.raises(UserError, match="not a run directory"):
        RunDir.open(tmp_path)


def test_epoch_metrics_take_every_version_and_the_resumed_value(tmp_path):
    for version, rows in enumerate(
        [
            [
                {"epoch": 0, "step": 5, "train/aux_weight": 1.0},
                {"epoch": 0, "step": 9, "dev/ccc_mean": 0.2},
                {"epoch": 1, "step": 12, "train/aux_weight": 0.8},
            ],  # interrupted in epoch 1
            [{"epoch": 1, "step": 14, "train/aux_weight": 0.8}, {"epoch": 1, "step": 19, "dev/ccc_mean": 0.4}],
        ]
    ):
        (tmp_path / "logs" / f"version_{version}").mkdir(parents=True)
        pd.DataFrame(rows).to_csv(tmp_path / "logs" / f"version_{version}" / "metrics.csv", index=False)
    log = RunDir(tmp_path).metric_log()
    assert log["version"].tolist() == [0, 0, 0, 1, 1]
    epochs = epoch_metrics(log)
    assert epochs["dev/ccc_mean"].to_dict() == {0: 0.2, 1: 0.4}
    assert epochs["train/aux_weight"].to_dict() == {0: 1.0, 1: 0.8}


def test_a_run_reads_the_same_from_any_directory_and_follows_a_moved_corpus(corpus, tmp_path, monkeypatch):
    work = tmp_path / "work"
    shutil.copytree(corpus, work / "corpus")
    monkeypatch.chdir(work)  # trained with paths relative to here
    assert main(train_args("corpus", "runs/rel", "trainer.max_epochs=1", "--no-eval")) == 0
    run = RunDir(work / "runs" / "rel")
    assert os.path.isabs(run.config().data.corpus) and os.path.isabs(pd.read_csv(run.labels_file)["path"][0])
    monkeypatch.chdir(tmp_path)  # elsewhere: the report evaluates from the recorded paths
    assert main(["report", str(run.path), "--output", "report", "--split", "Test1"]) == 0
    assert (tmp_path / "report" / "report.html").is_file() and run.metrics_file("Test1").is_file()
    model = str(run.model_dir)
    shutil.move(work / "corpus", tmp_path / "moved")  # the corpus moves: --corpus names where it went
    assert main(["evaluate", "--model", model, "--split", "Test1", "--output", "eval", "--quiet"]) == 2
    assert main(["evaluate", "--model", model, "--split", "Test1", "--corpus", "moved", "--output", "eval"]) == 0


def test_a_run_recorded_with_relative_paths_reads_them_from_where_it_was_trained(tmp_path, monkeypatch):
    """Runs trained before paths were recorded absolute keep them as typed: relative to the training's
    working directory, which is the run's path less its recorded output_dir."""
    run = RunDir(tmp_path / "work" / "runs" / "old")
    run.path.mkdir(parents=True)
    run.config_file.write_text("output_dir: runs/old\ndata:\n  corpus: data/corpus\n")
    monkeypatch.chdir(tmp_path)
    config = run.config()
    assert config.data.corpus == str(tmp_path / "work" / "data" / "corpus")
    assert config.output_dir == str(run.path)
    moved = RunDir(shutil.move(run.path, tmp_path / "elsewhere"))  # moved away: nothing to infer from
    assert moved.config().data.corpus == "data/corpus"
