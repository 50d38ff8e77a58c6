"""A short training run on a generated MSP-Podcast-layout corpus, through the CLI."""

import json

import pandas as pd
import pytest
import yaml

from conftest import TINY_WAVLM
from emosphere.cli import main
from emosphere.model import EmoSphereSER


def train_args(corpus, output, *extra):
    encoder = yaml.safe_dump(TINY_WAVLM, default_flow_style=True).strip()
    return ["train", f"data.corpus={corpus}", f"output_dir={output}", "trainer.max_epochs=2",
            "trainer.accelerator=cpu", "trainer.devices=1", "trainer.progress=false", "trainer.log_every_n_steps=1",
            "model.encoder.pretrained=false", f"model.encoder.config={encoder}", "model.head_hidden=32",
            "model.head_dropout=0.0", "data.num_workers=0", "data.batch_size=8", "optim.lr=3e-3",
            "optim.accumulate_grad_batches=1", *extra]


@pytest.fixture(scope="module")
def run(corpus, tmp_path_factory):
    output = tmp_path_factory.mktemp("run")
    assert main(train_args(corpus, output)) == 0
    return output


def test_training_writes_a_model_directory(run):
    assert {"config.json", "model.safetensors", "audio_stats.json"} <= {p.name for p in (run / "model").iterdir()}
    model = EmoSphereSER.from_pretrained(run / "model")
    assert model.run_config["trainer"]["max_epochs"] == 2  # the run's config travels with the weights
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["batch_size"] == 8
    assert (run / "checkpoints" / "last.ckpt").is_file()


def test_training_lowers_the_loss(run):
    logs = pd.read_csv(run / "logs" / "version_0" / "metrics.csv")
    per_epoch = logs.dropna(subset=["train/ccc_loss_epoch"]).set_index("epoch")["train/ccc_loss_epoch"]
    assert per_epoch.loc[1] < per_epoch.loc[0]
    weights = logs.dropna(subset=["train/aux_weight"]).groupby("epoch")["train/aux_weight"].first()
    assert weights.tolist() == pytest.approx([1.0, 0.802])
    assert "dev/ccc_mean" in logs and logs["dev/ccc_mean"].notna().sum() == 2


def test_model_selection_uses_the_values_evaluate_reports(run):
    logs = pd.read_csv(run / "logs" / "version_0" / "metrics.csv")
    metrics = json.loads((run / "eval_Development" / "metrics.json").read_text())
    assert metrics["ccc"]["mean"] == pytest.approx(logs["dev/ccc_mean"].max(), abs=1e-5)  # the best epoch's


def test_evaluate_writes_metrics_and_challenge_predictions(run, corpus, tmp_path, capsys):
    assert main(["evaluate", "--model", str(run / "model"), "--split", "Test1", "--output-dir", str(tmp_path),
                 "--quiet"]) == 0
    assert "CCC arousal" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["split"] == "Test1" and metrics["n"] > 0
    assert set(metrics["ccc"]) == {"arousal", "valence", "dominance", "mean"}
    assert {"accuracy", "macro_f1", "uar"} <= set(metrics["region"])
    predictions = pd.read_csv(tmp_path / "predictions.csv")
    assert list(predictions.columns) == ["FileName", "EmoAct", "EmoVal", "EmoDom"]
    assert len(predictions) == metrics["n"]
    assert predictions[["EmoAct", "EmoVal", "EmoDom"]].stack().between(1, 7).all()
    full = pd.read_csv(tmp_path / "predictions_full.csv")
    assert {"arousal_unit", "r", "theta", "phi", "region", "p_I", "true_EmoAct"} <= set(full.columns)


def test_resume_continues_from_the_last_checkpoint(run, corpus, tmp_path):
    import shutil

    shutil.copytree(run, tmp_path / "run")
    assert main(train_args(corpus, tmp_path / "run", "--resume", "--no-eval", "trainer.max_epochs=3")) == 0
    resumed = pd.read_csv(tmp_path / "run" / "logs" / "version_1" / "metrics.csv")
    assert resumed["epoch"].min() == resumed["epoch"].max() == 2  # only the new epoch ran
    assert (tmp_path / "run" / "logs" / "version_0" / "metrics.csv").is_file()  # history kept


def test_no_auxiliary_task_trains_without_a_region_head(corpus, tmp_path):
    assert main(train_args(corpus, tmp_path, "trainer.max_epochs=1", "objective.aux_schedule=none",
                           "model.pooling=mean")) == 0
    assert EmoSphereSER.from_pretrained(tmp_path / "model").region_head is None
    metrics = json.loads((tmp_path / "eval_Development" / "metrics.json").read_text())
    assert metrics["region"]["source"] == "regression"
