"""A short training run on a generated MSP-Podcast-layout corpus, through the CLI."""

import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pandas as pd
import pytest
import torch
import yaml
from conftest import LARGE_WAVLM, TINY_WAVLM, train_args, write_corpus

import emosphere
from emosphere.cli import main
from emosphere.config import ConfigError, RunConfig, load_config
from emosphere.labels import Corpus, prepare_labels
from emosphere.model import EmoSphereSER
from emosphere.rundir import RunDir
from emosphere.sphere import RegionSet
from emosphere.train import AtomicCheckpointIO, EmoSphereData, EmoSphereTask, build_trainer


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
    assert (
        main(["evaluate", "--model", str(run / "model"), "--split", "Test1", "--output", str(tmp_path), "--quiet"]) == 0
    )
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
    assert {"arousal_unit", "r", "theta", "phi", "region_classifier", "region_point", "p_I", "true_EmoAct"} <= set(
        full.columns
    )


def test_resume_continues_from_the_last_checkpoint(run, corpus, tmp_path):
    import shutil

    shutil.copytree(run, tmp_path / "run")
    assert main(train_args(corpus, tmp_path / "run", "--resume", "--no-eval", "trainer.max_epochs=3")) == 0
    resumed = pd.read_csv(tmp_path / "run" / "logs" / "version_1" / "metrics.csv")
    assert resumed["epoch"].min() == resumed["epoch"].max() == 2  # only the new epoch ran
    assert (tmp_path / "run" / "logs" / "version_0" / "metrics.csv").is_file()  # history kept


def test_no_auxiliary_task_trains_without_a_region_head(corpus, tmp_path):
    assert (
        main(train_args(corpus, tmp_path, "trainer.max_epochs=1", "objective.aux_schedule=none", "model.pooling=mean"))
        == 0
    )
    assert EmoSphereSER.from_pretrained(tmp_path / "model").region_head is None
    metrics = json.loads((tmp_path / "eval_Development" / "metrics.json").read_text())
    assert metrics["region"]["source"] == "regression"


# Multi-process training and exact resume: runs of the CLI in their own processes. A loading worker
# leaves the trainer one thread: two OpenMP threads on two busy cores are several times slower.

DETERMINISTIC = [
    "model.pooling_dropout=0.0",
    "model.encoder.config="
    + yaml.safe_dump(
        {**TINY_WAVLM, "hidden_dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0},
        default_flow_style=True,
    ).strip(),
]


def cli(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "emosphere.cli", *args]


def cli_env() -> dict:
    """The environment of a CLI subprocess: this checkout's sources first, no model hub."""
    source = str(Path(emosphere.__file__).parents[1])
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")]),
        "HF_HUB_OFFLINE": "1",
    }


def dev_metrics(run: Path) -> pd.DataFrame:
    """Development metrics per epoch, over all of a run's logs (one folder per start or resume)."""
    logs = pd.concat([pd.read_csv(f) for f in sorted(run.glob("logs/version_*/metrics.csv"))])
    dev = logs.dropna(subset=["dev/ccc_mean"]).set_index("epoch")
    return dev[[c for c in dev.columns if c.startswith("dev/")]]


def test_two_process_ddp_matches_one_process_accumulating_the_same_global_batch(corpus, tmp_path):
    # 32 training rows in batches of 4: 8 micro-batches, so that no process repeats a batch to even
    # out the shares. Rank r takes micro-batch r of each pair that one process accumulates.
    common = ["trainer.max_epochs=2", "data.batch_size=4", "data.num_workers=1", *DETERMINISTIC]
    ddp_run = subprocess.run(  # noqa: PLW1510 - the return code is asserted
        cli(train_args(corpus, tmp_path / "ddp", *common, "trainer.devices=2", "trainer.strategy=ddp")),
        env=cli_env(),
        timeout=300,
        capture_output=True,
        text=True,
    )
    assert ddp_run.returncode == 0, ddp_run.stderr[-3000:]
    assert main(train_args(corpus, tmp_path / "one", *common, "optim.accumulate_grad_batches=2")) == 0
    ddp, one = dev_metrics(tmp_path / "ddp"), dev_metrics(tmp_path / "one")
    assert list(ddp.index) == list(one.index) == [0, 1]
    pd.testing.assert_frame_equal(ddp, one, atol=1e-4, rtol=0)
    # The whole development split, gathered from both processes, in the final evaluation too.
    ddp_eval, one_eval = (
        json.loads((tmp_path / run / "eval_Development" / "metrics.json").read_text()) for run in ("ddp", "one")
    )
    assert ddp_eval["n"] == one_eval["n"]
    assert ddp_eval["ccc"] == pytest.approx(one_eval["ccc"], abs=1e-4)


def signal_once_checkpointed(args: list[str], run: Path, signum: int, until=lambda position: True) -> tuple[int, str]:
    """Train in a process of its own; send it ``signum`` once it has written a checkpoint whose position
    (``{"epoch", "batches", ...}``) satisfies ``until``. Its exit code and log."""
    log, last, written = run.with_suffix(".log"), run / "checkpoints" / "last.ckpt", None
    with log.open("w") as stderr:
        process = subprocess.Popen(cli(args), env=cli_env(), stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + 300
            while process.poll() is None:
                assert time.monotonic() < deadline, "no such checkpoint within 5 minutes"
                if last.exists() and last.stat().st_mtime_ns != written:
                    written = last.stat().st_mtime_ns
                    if until(torch.load(last, weights_only=True)["EmoSphereData"]):
                        break
                time.sleep(0.005)
            process.send_signal(signum)
            process.wait(timeout=120)
        finally:
            process.kill()
    return process.returncode, log.read_text()


def test_a_run_killed_mid_epoch_resumes_exactly(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", {"Train": 64, "Development": 12})  # 52 kept: 13 batches of 4
    # Dropout and SpecAugment masking (torch's and numpy's random streams) stay on: they must resume too.
    # Killed in the second of three epochs: the resumed run must pass a development pass and an epoch's
    # start in step with the uninterrupted one.
    encoder = {**TINY_WAVLM, "mask_time_prob": 0.3, "mask_time_length": 2}
    args = [
        "trainer.max_epochs=3",
        "data.batch_size=4",
        "optim.accumulate_grad_batches=2",
        "trainer.checkpoint_every_n_steps=2",
        "model.head_dropout=0.2",
        "data.num_workers=1",
        "--no-eval",
        "model.encoder.config=" + yaml.safe_dump(encoder, default_flow_style=True).strip(),
    ]
    assert main(train_args(corpus, tmp_path / "whole", *args)) == 0

    run = tmp_path / "killed"
    code, _ = signal_once_checkpointed(
        train_args(corpus, run, *args),
        run,
        signal.SIGKILL,  # no time to save
        until=lambda position: position["epoch"] == 1 and position["batches"],
    )
    assert code == -signal.SIGKILL, "the run ended before it was killed"
    position = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["EmoSphereData"]
    assert position["epoch"] == 1 and 0 < position["batches"] < 13, position  # stopped mid-epoch
    unfinished = run / "checkpoints" / ".last.ckpt.x1y2z3.tmp"  # as a kill in the middle of a save leaves
    unfinished.write_bytes(b"half a checkpoint")

    assert main(train_args(corpus, run, *args, "--resume")) == 0
    assert not unfinished.exists()
    pd.testing.assert_frame_equal(dev_metrics(run), dev_metrics(tmp_path / "whole"), atol=1e-6, rtol=0)
    resumed, whole = (torch.load(r / "checkpoints" / "last.ckpt", weights_only=True) for r in (run, tmp_path / "whole"))
    assert resumed["global_step"] == whole["global_step"] == 21
    for name, value in whole["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][name], value, atol=1e-6, rtol=0, msg=name)


def test_sigterm_stops_training_with_a_failing_exit_code(corpus, tmp_path):
    run = tmp_path / "run"
    args = train_args(corpus, run, "trainer.max_epochs=100", "trainer.checkpoint_every_n_steps=1", "data.num_workers=1")
    code, log = signal_once_checkpointed(args, run, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM  # what a scheduler expects of a preempted job, not 0
    assert "stopped by SIGTERM" in log and "--resume" in log


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("interrupted while writing")


def test_an_interrupted_checkpoint_write_leaves_the_previous_checkpoint_whole(tmp_path):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1, "weights": torch.ones(1000)}, path)
    with pytest.raises(RuntimeError, match="interrupted"):
        AtomicCheckpointIO().save_checkpoint({"step": 2, "weights": torch.zeros(1000), "more": Unpicklable()}, path)
    assert torch.load(path, weights_only=True)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_each_epoch_trains_on_a_new_order_of_the_same_batches(corpus, tmp_path, monkeypatch):
    seen = {0: [], 1: []}
    train_step = EmoSphereTask.training_step

    def recording(task, batch, batch_index):
        seen[task.current_epoch].append(sorted(batch.index.tolist()))
        return train_step(task, batch, batch_index)

    monkeypatch.setattr(EmoSphereTask, "training_step", recording)
    assert main(train_args(corpus, tmp_path, "data.num_workers=1", "--no-eval")) == 0
    assert seen[0] != seen[1] and sorted(seen[0]) != sorted(seen[1])
    assert sorted(i for b in seen[0] for i in b) == sorted(i for b in seen[1] for i in b)


def test_a_mid_epoch_checkpoint_resumes_only_with_the_same_batch_order(corpus):
    table = prepare_labels(Corpus.at(corpus), RegionSet(), progress=False)
    datamodule = EmoSphereData(table, RunConfig(), min_samples=0)
    datamodule.trainer = SimpleNamespace(world_size=2)
    saved = {"processes": 2, **datamodule._batch_order()}
    datamodule.load_state_dict({**saved, "epoch": 3, "batches": 0, "processes": 4})  # an epoch's start: any number
    with pytest.raises(ConfigError, match="4 processes"):
        datamodule.load_state_dict({**saved, "epoch": 3, "batches": 5, "processes": 4})
    datamodule.load_state_dict({**saved, "epoch": 3, "batches": 0, "data.batch_size": 8})
    with pytest.raises(ConfigError, match="data.batch_size: the checkpoint stopped mid-epoch with 8"):
        datamodule.load_state_dict({**saved, "epoch": 3, "batches": 5, "data.batch_size": 8})
    datamodule.load_state_dict({**saved, "epoch": 3, "batches": 5})
    assert datamodule.position == {"epoch": 3, "batches": 5}


def test_tensorboard_gets_every_curve_of_the_csv_log(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    curves = set(pd.read_csv(run / "logs" / "version_0" / "metrics.csv").columns) - {"epoch", "step"}
    events = EventAccumulator(str(run / "tensorboard" / "version_0")).Reload()
    assert {"dev/ccc_mean", "train/aux_weight", "train/ccc_loss_epoch"} <= curves <= set(events.Tags()["scalars"])


def test_micro_batches_give_the_gradient_of_the_accumulated_plain_batches():
    import numpy as np
    import torch
    from conftest import tiny_model_config

    from emosphere import data
    from emosphere.audio import AudioStats
    from emosphere.config import OptimConfig, RunConfig, TrainerConfig
    from emosphere.train import EmoSphereTask

    rng = np.random.default_rng(0)
    items = [
        {
            "waveform": (0.1 * rng.standard_normal(n)).astype(np.float32),
            "index": i,
            "avd": rng.uniform(size=3).astype(np.float32),
            "region": i % 8,
        }
        for i, n in enumerate([9000, 3000, 16000, 5000, 12000, 2000, 7000])
    ]
    batches = [items[:4], items[4:]]  # the second one short, as at the end of an epoch
    config = tiny_model_config(pooling_dropout=0.0, head_dropout=0.0)
    config.encoder.config = {
        **TINY_WAVLM,
        "hidden_dropout": 0.0,
        "attention_dropout": 0.0,
        "activation_dropout": 0.0,
        "feat_proj_dropout": 0.0,
    }
    torch.manual_seed(0)
    model = EmoSphereSER.build(config, AudioStats(0.0, 0.1, 1, 1)).train()
    weights = np.linspace(0.5, 2.0, 8)

    def gradients(micro_batches, loaded):
        run = RunConfig(
            optim=OptimConfig(accumulate_grad_batches=2), trainer=TrainerConfig(micro_batches_per_step=micro_batches)
        )
        task = EmoSphereTask(model, run, weights, dev_rows=pd.DataFrame({"path": []}))
        model.zero_grad()
        for batch in loaded:  # what Lightning does: each step's loss / its accumulate_grad_batches
            (task.training_step(batch, 0) / (2 // micro_batches)).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    with pytest.warns(UserWarning, match="self.log"):  # no trainer attached here
        plain = gradients(1, [data.collate(b) for b in batches])
        together = gradients(2, [data.collate_micro_batches(batches)])
        union = gradients(1, [data.collate(items)])
    for name in plain:
        torch.testing.assert_close(together[name], plain[name], atol=1e-5, rtol=0, msg=name)
    # the per-batch CCC of the union of the batches would be another objective
    assert any(not torch.allclose(union[n], plain[n], atol=1e-4) for n in plain)


def test_micro_batches_and_bf16_train_through_the_cli(corpus, tmp_path):
    assert (
        main(
            train_args(
                corpus,
                tmp_path,
                "trainer.max_epochs=1",
                "--no-eval",
                "trainer.precision=bf16-mixed",
                "optim.accumulate_grad_batches=2",
                "trainer.micro_batches_per_step=2",
            )
        )
        == 0
    )
    logs = pd.read_csv(tmp_path / "logs" / "version_0" / "metrics.csv")
    steps = logs.dropna(subset=["train/loss"])
    train_rows = int((pd.read_csv(tmp_path / "labels.csv")["Split_Set"] == "Train").sum())
    assert len(steps) == math.ceil(math.ceil(train_rows / 8) / 2)  # batches of 8, two per step
    assert steps["train/loss"].notna().all() and (tmp_path / "model" / "model.safetensors").is_file()


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed"])
@pytest.mark.parametrize("compiled", [pytest.param(False, id="plain"), pytest.param(True, id="compiled")])
def test_three_cuda_steps_of_a_wavlm_large_shaped_model_train_and_resume(
    tmp_path, precision, compiled, record_property
):
    """WavLM-large's shapes with 2 of its 24 layers (they repeat; the checkpoints stay small), 3 steps of
    batches of 2 crops of one length (one length for the compiled blocks), then a resumed epoch of 3."""
    corpus = write_corpus(tmp_path / "corpus", {"Train": 6, "Development": 2})
    run = tmp_path / "run"
    encoder = yaml.safe_dump({**LARGE_WAVLM, "num_hidden_layers": 2}, default_flow_style=True).strip()
    args = train_args(
        corpus,
        run,
        "--no-eval",
        "trainer.accelerator=gpu",
        f"trainer.precision={precision}",
        f"trainer.compile={str(compiled).lower()}",
        f"model.encoder.config={encoder}",
        "data.batch_size=2",
        "data.max_seconds=0.25",  # every clip is longer: every crop has 4000 samples
    )
    assert main([*args, "trainer.max_epochs=1"]) == 0
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3
    assert main([*args, "trainer.max_epochs=2", "--resume"]) == 0
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 6 and last["epoch"] == 1
    losses = pd.concat(pd.read_csv(run / "logs" / f"version_{v}" / "metrics.csv") for v in (0, 1))["train/loss"]
    record_property("losses", losses.dropna().round(4).tolist())
    assert losses.notna().sum() == 6 and math.isfinite(losses.sum())
    config = load_config(run / "config.yaml")
    L.seed_everything(config.trainer.seed)  # the weights training started from
    initial = EmoSphereSER.build(config.model).state_dict()
    final = {key.removeprefix("model."): value for key, value in last["state_dict"].items()}
    changed = [key for key, value in initial.items() if not torch.equal(value, final[key])]
    assert all(torch.isfinite(value).all() for value in final.values())
    assert any(key.startswith("encoder.model.encoder.layers.1.") for key in changed), changed
    assert any(key.startswith("regression_head.") for key in changed), changed


def test_training_shows_lightning_s_lines_but_not_its_advertisements(tmp_path, caplog):
    config = RunConfig()
    config.trainer.accelerator, config.trainer.devices = "cpu", "1"
    with caplog.at_level(logging.INFO):
        build_trainer(config, RunDir(tmp_path))
    assert "GPU available" in caplog.text and "Tip" not in caplog.text
