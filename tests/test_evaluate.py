"""Evaluation, and the one inference path: evaluate, predict, the API and training's development
pass give the same value for the same file, long and too-short files included; a run's evaluation
is made once, then read."""

import json
import os
import shutil
import subprocess
import sys

import lightning as L
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import tiny_model, tone, write_corpus
from torch.utils.data import DataLoader

from emosphere.backends import TorchBackend
from emosphere.cli import main
from emosphere.config import RunConfig
from emosphere.data import InferenceWindows
from emosphere.engine import Options, Predictor, Windowing
from emosphere.errors import UserError
from emosphere.evaluate import Intervals, evaluate, evaluate_run, format_metrics, write_evaluation
from emosphere.io import read_table
from emosphere.labels import Corpus, prepare_labels
from emosphere.rundir import RunDir
from emosphere.sphere import RegionSet
from emosphere.train import EmoSphereTask

UNITS = ["arousal_unit", "valence_unit", "dominance_unit"]


@pytest.fixture(scope="module")
def dev(tmp_path_factory) -> pd.DataFrame:
    """Ten development files: one of 20 s (two windows and a half), one of 10 ms (too short)."""
    root = write_corpus(tmp_path_factory.mktemp("corpus"), {"Development": 10}, seed=3)
    files = sorted((root / "Audios").iterdir())
    sf.write(files[1], tone(16000, 20.0, (180, 640, 2100)) * np.linspace(0.2, 1.5, 320000, dtype=np.float32), 16000)
    sf.write(files[4], tone(16000, 0.01), 16000)
    return prepare_labels(Corpus.at(root), RegionSet(), keep_other=True, progress=False)


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=1)


@pytest.fixture(scope="module")
def evaluated(model, dev):
    return evaluate(Predictor(TorchBackend(model), Options(batch_size=3)), dev, model.regions, split="Development")


def test_evaluate_scores_every_predictable_file_and_lists_the_rest(evaluated, dev):
    metrics, predictions = evaluated
    assert metrics["n"] == 9 and len(predictions) == 9
    assert [s["file"] for s in metrics["skipped"]] == [dev.path[4]]
    assert metrics["skipped"][0]["error"].startswith("too short")
    assert "1 file(s) skipped" in format_metrics(metrics)
    assert predictions.FileName.tolist() == dev.FileName.drop(index=4).tolist()
    assert predictions[["EmoAct", "EmoVal", "EmoDom"]].stack().between(1, 7).all()


def test_predict_and_the_api_give_evaluate_s_values(evaluated, model, dev, tmp_path):
    _, predictions = evaluated
    output = tmp_path / "out.csv"
    model.save_pretrained(tmp_path / "model")
    assert (
        main(
            [
                "predict",
                "--model",
                str(tmp_path / "model"),
                "--output",
                str(output),
                *dev.path,
                "--batch-size",
                "2",
                "--quiet",
            ]
        )
        == 1
    )  # the short file fails
    for table in (read_table(output), model.predict(dev.path.tolist(), batch_size=5)):
        files = table[table.level == "file"]
        assert files.file.tolist() == dev.path.drop(index=4).tolist()
        np.testing.assert_allclose(files[UNITS].to_numpy(), predictions[UNITS].to_numpy(), atol=1e-6)
    long = read_table(output).query("file == @dev.path[1]")
    assert long.level.tolist() == ["file", "window", "window", "window"]  # the 20 s file was windowed


def test_the_development_pass_scores_what_evaluate_scores(evaluated, model, dev):
    metrics, _ = evaluated
    task = EmoSphereTask(model, RunConfig(), None, dev)
    windows = InferenceWindows(dev.path.tolist(), windowing(model.min_samples))
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    (logged,) = trainer.validate(task, dataloaders=DataLoader(windows, batch_size=None), verbose=False)
    for name in ("arousal", "valence", "dominance", "mean"):
        assert logged[f"dev/ccc_{name}"] == pytest.approx(metrics["ccc"][name], abs=1e-6)
    assert logged["dev/region_accuracy"] == pytest.approx(metrics["region"]["accuracy"], abs=1e-6)
    assert logged["dev/files_skipped"] == 1


def windowing(min_samples: int = 400) -> Windowing:
    return Windowing(Options(batch_size=4), min_samples, crop_seconds=12.0)


def test_development_windows_are_shared_out_without_overlap(dev):
    whole = list(InferenceWindows(dev.path.tolist(), windowing()))
    shards = [b for r in range(3) for b in InferenceWindows(dev.path.tolist(), windowing(), num_replicas=3, rank=r)]

    def windows(batches):
        return sorted((int(o), int(s)) for b in batches for o, s in zip(b["owner"], b["spans"][:, 0]))

    assert windows(shards) == windows(whole) and len(windows(whole)) == 9 + 2


def test_write_evaluation_writes_the_challenge_format(evaluated, tmp_path):
    metrics, predictions = evaluated
    write_evaluation(metrics, predictions, tmp_path)
    assert pd.read_csv(tmp_path / "predictions.csv").columns.tolist() == ["FileName", "EmoAct", "EmoVal", "EmoDom"]
    assert json.loads((tmp_path / "metrics.json").read_text())["skipped"] == metrics["skipped"]
    assert {"true_EmoAct", "region_classifier", "region_point", "r"} <= set(
        pd.read_csv(tmp_path / "predictions_full.csv")
    )


def test_onnx_prediction_runs_without_torch(model, dev, evaluated, tmp_path):
    from emosphere.export import export_onnx

    export_onnx(model, tmp_path / "model.onnx")
    files = [dev.path[0], dev.path[1]]
    script = (
        "import sys\n"
        "sys.modules['torch'] = None  # any import of torch now fails\n"
        "from emosphere.cli import main\n"
        f"code = main(['predict', '--backend', 'onnx', '--model', {str(tmp_path / 'model.onnx')!r}, '--output',"
        f" {str(tmp_path / 'out.csv')!r}, *{files!r}, '--quiet'])\n"
        "assert code == 0, code\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    table, expected = read_table(tmp_path / "out.csv"), model.predict(files)
    assert table.level.tolist() == expected.level.tolist() == ["file", "file", "window", "window", "window"]
    numeric = expected.select_dtypes("number").columns
    np.testing.assert_allclose(table[numeric].to_numpy(), expected[numeric].to_numpy(), atol=1e-4)


def test_a_run_is_evaluated_once_then_read(trained_run, tmp_path):
    shutil.copytree(trained_run, tmp_path / "run")
    run = RunDir(tmp_path / "run")
    metrics, predictions = evaluate_run(run, "Test1")
    assert run.metrics_file("Test1").is_file()
    assert metrics["split"] == "Test1" and len(predictions) == metrics["n"]
    stale = {**metrics, "n": -1}
    run.metrics_file("Test1").write_text(json.dumps(stale))
    assert evaluate_run(run, "Test1")[0] == stale  # newer than the model: read
    weights = run.model_dir / "model.safetensors"
    later = run.metrics_file("Test1").stat().st_mtime + 10
    os.utime(weights, (later, later))  # the model was trained again since
    assert evaluate_run(run, "Test1")[0] == metrics
    shutil.rmtree(run.model_dir)  # a second call reads the folder and needs no model
    again, table = evaluate_run(run, "Test1")
    assert again == metrics and table["FileName"].tolist() == predictions["FileName"].tolist()
    with pytest.raises(UserError, match="no model"):
        evaluate_run(run, "Development")


def test_metrics_carry_95_percent_intervals_by_utterance_or_by_speaker(evaluated, model, dev):
    metrics, _ = evaluated
    bounds = metrics["intervals"]
    assert (bounds["by"], bounds["units"], bounds["resamples"], bounds["level"]) == ("utterance", 9, 1000, 0.95)
    for name in ("arousal", "valence", "dominance", "mean"):
        assert bounds["ccc"][name][0] <= bounds["ccc"][name][1]
    assert set(bounds["region"]) == {"accuracy", "macro_f1", "uar"}
    summary = format_metrics(metrics)
    assert f"mean {metrics['ccc']['mean']:.3f} [{bounds['ccc']['mean'][0]:.3f}, " in summary
    assert "95 % intervals over 9 utterances" in summary
    predictor = Predictor(TorchBackend(model), Options(batch_size=3))
    speakers, _ = evaluate(predictor, dev, model.regions, split="Development", intervals=Intervals(by="speaker"))
    assert speakers["intervals"]["by"] == "speaker" and speakers["intervals"]["units"] == dev["SpkrID"].nunique()
    assert (
        speakers["ccc"] == metrics["ccc"]
        and "intervals" not in evaluate(predictor, dev, model.regions, split="Development", intervals=None)[0]
    )


def test_another_corpus_on_1_to_5_scores_as_rescaled_by_hand_and_is_reported_on_1_to_5(model, dev, tmp_path):
    model.save_pretrained(tmp_path / "model")
    manifest = pd.DataFrame({"path": dev["path"], "split": "Test", "speaker": dev["SpkrID"]})
    labels = dict(zip(("arousal", "valence", "dominance"), ("EmoAct", "EmoVal", "EmoDom")))
    for column, label in labels.items():
        manifest[column] = (dev[label] - 1) / 6 * 4 + 1  # the same ratings on 1-5
    manifest.to_csv(tmp_path / "five.csv", index=False)
    seven = manifest.assign(**{column: dev[label].to_numpy() for column, label in labels.items()})
    seven.to_csv(tmp_path / "seven.csv", index=False)
    for name, scale in (("five", ["1", "5"]), ("seven", ["1", "7"])):
        args = ["evaluate", "--model", str(tmp_path / "model"), "--corpus", str(tmp_path / f"{name}.csv")]
        code = main([*args, "--scale", *scale, "--split", "Test", "--output", str(tmp_path / name), "--quiet"])
        assert code == 1  # the too-short file is skipped, as in the MSP-Podcast layout
    five, seven = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("five", "seven"))
    for name in ("arousal", "valence", "dominance", "mean"):
        assert five["ccc"][name] == pytest.approx(seven["ccc"][name], abs=1e-9)
    assert five["scale"] == "CCC on the 1-5 scale" and seven["scale"] == "CCC on the 1-7 scale"
    challenge = pd.read_csv(tmp_path / "five" / "predictions.csv")
    assert challenge[["EmoAct", "EmoVal", "EmoDom"]].stack().between(1, 5).all()
    full = pd.read_csv(tmp_path / "five" / "predictions_full.csv")
    assert full["scale_min"].eq(1).all() and full["scale_max"].eq(5).all()
    np.testing.assert_allclose(full["true_EmoAct"], manifest["arousal"].drop(index=4), atol=1e-5)  # 6 digits
