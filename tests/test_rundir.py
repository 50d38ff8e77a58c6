"""Reading run directories: config, the logged curves across resumes, evaluation on demand."""

import json
import os
import shutil

import pandas as pd
import pytest

from emosphere import rundir


def test_a_missing_or_foreign_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such run directory"):
        rundir.open_run(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        rundir.open_run(tmp_path)


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
    log = rundir.metric_log(tmp_path)
    assert log["version"].tolist() == [0, 0, 0, 1, 1]
    epochs = rundir.epoch_metrics(log)
    assert epochs["dev/ccc_mean"].to_dict() == {0: 0.2, 1: 0.4}
    assert epochs["train/aux_weight"].to_dict() == {0: 1.0, 1: 0.8}


def test_evaluation_runs_once_then_is_read(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    metrics, predictions = rundir.evaluation(run, "Test1")
    assert (run / "eval_Test1" / "metrics.json").is_file()
    assert metrics["split"] == "Test1" and len(predictions) == metrics["n"]
    stale = {**metrics, "n": -1}
    (run / "eval_Test1" / "metrics.json").write_text(json.dumps(stale))
    assert rundir.evaluation(run, "Test1")[0] == stale  # newer than the model: read
    weights = run / "model" / "model.safetensors"
    later = (run / "eval_Test1" / "metrics.json").stat().st_mtime + 10
    os.utime(weights, (later, later))  # the model was trained again since
    assert rundir.evaluation(run, "Test1")[0] == metrics
    shutil.rmtree(run / "model")  # a second call reads the folder and needs no model
    again, table = rundir.evaluation(run, "Test1")
    assert again == metrics and table["FileName"].tolist() == predictions["FileName"].tolist()
    with pytest.raises(FileNotFoundError, match="no model"):
        rundir.evaluation(run, "Development")
