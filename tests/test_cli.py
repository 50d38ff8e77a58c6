import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import write_corpus

from emosphere.cli import build_parser, main


def test_prepare_writes_the_table_and_prints_counts(corpus, tmp_path, capsys):
    output = tmp_path / "labels.csv"
    assert main(["prepare", "--corpus", str(corpus), "--regions", "sphere60", "--output", str(output), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "19 classes" in printed and "Train" in printed and "origin" in printed
    table = pd.read_csv(output)
    assert {"region", "region_name", "r", "theta", "phi", "duration"} <= set(table.columns)


def test_prepare_reports_a_bad_label_file(tmp_path, capsys):
    (tmp_path / "Labels").mkdir()
    (tmp_path / "Labels" / "labels_consensus.csv").write_text("FileName,EmoAct\n")
    assert main(["prepare", "--corpus", str(tmp_path), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert "labels_consensus.csv" in error and "missing columns" in error


def test_bad_override_is_reported_not_raised(capsys):
    assert main(["train", "trainer.max_epoch=3"]) == 2
    assert "trainer.max_epoch" in capsys.readouterr().err


COMMANDS = build_parser()._subparsers._group_actions[0].choices


def test_every_command_is_registered():
    assert set(COMMANDS) == {"prepare", "check", "train", "evaluate", "compare", "predict", "timeline", "export",
                             "serve", "demo-corpus", "report", "ablate", "import-original"}  # fmt: skip


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_is_explained(command):
    for action in COMMANDS[command]._actions:
        assert action.help, f"{command} {action.option_strings or action.dest} has no help"


@pytest.mark.parametrize(
    "old, new, command",
    [
        ("--num-workers", "--workers", ["predict", "--model", "m", "--output", "p.csv", "a.wav"]),
        ("--num-workers", "--workers", ["evaluate", "--model", "m"]),
        ("--output-dir", "--output", ["evaluate", "--model", "m"]),
        ("--output-dir", "--output", ["ablate", "set.yaml"]),
    ],
)
def test_old_option_names_still_work_for_a_release_and_say_so(old, new, command, caplog):
    value = "3" if "workers" in old else "out"
    args = build_parser().parse_args([*command, old, value])
    expected = 3 if "workers" in old else Path("out")
    assert getattr(args, new.lstrip("-")) == expected
    assert f"{old} is deprecated" in caplog.text and f"use {new}" in caplog.text
    assert old not in COMMANDS[command[0]].format_help()  # hidden from the help


def test_the_demo_corpus_folder_may_still_be_a_positional(monkeypatch, tmp_path, capsys):
    made = {}
    monkeypatch.setattr("emosphere.demo.make_demo_corpus", lambda output, **options: made.setdefault("at", output))
    assert main(["demo-corpus", str(tmp_path / "old"), "--quiet"]) == 0
    assert made["at"] == tmp_path / "old" and "deprecated; use --output" in capsys.readouterr().err


TINY = str(Path(__file__).parents[1] / "recipes" / "demo" / "tiny.yaml")


@pytest.fixture(scope="module")
def broken_corpus(tmp_path_factory):
    root = write_corpus(tmp_path_factory.mktemp("broken"), {"Train": 8, "Development": 4})
    labels = pd.read_csv(root / "Labels" / "labels_consensus.csv")
    labels.loc[1, "EmoAct"] = 7.5
    labels.to_csv(root / "Labels" / "labels_consensus.csv", index=False)
    (root / "Audios" / labels.loc[2, "FileName"]).unlink()
    return root


# Each is a mistake a new user makes; {run} is an output folder that must not be created,
# {corpus} a good corpus, {broken} one with a bad label and a missing file.
MISTAKES = [
    (["train", "model.regions=sphere20"], "model.regions: 'sphere20' is not one of octant"),
    (["train", "objective.aux_schedule=cosine"], "objective.aux_schedule: 'cosine' is not one of linear"),
    (["train", "trainer.precision=16"], "trainer.precision: '16' is not one of auto, 32-true, 16-mixed"),
    (["train", "data.batch_size=-4"], "data.batch_size: must be >= 1, got -4"),
    (["train", "trainer.max_epochs=0"], "trainer.max_epochs: must be >= 1"),
    (["train", "optim.lr=0"], "optim.lr: must be > 0"),
    (["train", "data.corpus=["], "data.corpus=[': the value is not valid YAML"),
    (["train", "--config", "nothing.yaml"], "nothing.yaml: config file not found"),
    (["train", "--config", TINY, "output_dir={run}", "data.corpus={run}/missing"], "data.corpus: "),
    (
        ["train", "--config", TINY, "output_dir={run}", "data.corpus={corpus}", "trainer.strategy=dpp"],
        "trainer.strategy: 'dpp' is not one of auto, ddp",
    ),
    (
        ["train", "--config", TINY, "output_dir={run}", "data.corpus={corpus}", "data.dev_split=Dev"],
        "1 problem(s) block training",
    ),
    (
        [
            "train",
            "--config",
            TINY,
            "output_dir={run}",
            "data.corpus={corpus}",
            "model.encoder.config.model_type=wavml",
        ],
        "model.encoder.config: cannot get the encoder config",
    ),
    (
        ["train", "--config", TINY, "output_dir={run}", "data.corpus={corpus}", "trainer.devices=0,1"],
        "trainer: Lightning rejects these settings",
    ),
    (["train", "--config", TINY, "output_dir={run}", "data.corpus={corpus}", "--resume"], "--resume: no checkpoint"),
    (
        ["train", "--config", TINY, "output_dir={run}", "data.corpus={corpus}", "model.encoder.config.hidden_size=95"],
        "model.encoder.config: hidden_size 95 is not divisible by num_attention_heads 4",
    ),
    (
        [
            "train",
            "--config",
            TINY,
            "output_dir={run}",
            "data.corpus={corpus}",
            "model.encoder.config.num_conv_pos_embedding_groups=5",
        ],
        "hidden_size 96 is not divisible by num_conv_pos_embedding_groups 5",
    ),
    (
        ["train", "--config", TINY, "output_dir={run}", "data.corpus={corpus}", "model.encoder.config.conv_dim=[64]"],
        "model.encoder.config: cannot get the encoder config of 'wavlm-tiny' (Class validation error for validator "
        "'validate_architecture': ValueError: Configuration for convolutional layers is incorrect.",
    ),
    (
        ["check", "--config", TINY, "output_dir={run}", "data.corpus={corpus}", "model.attention_heads=5"],
        "model: pooling and heads do not fit the encoder (dim 96 is not divisible by 5 heads)",
    ),
    (["train", "--config", TINY, "output_dir={run}", "data.corpus={broken}"], "2 problem(s) block training"),
    (["check", "--corpus", "{broken}", "--quiet"], "2 problem(s) block training"),
    (["check", "--corpus", "{run}", "--quiet"], "audio folder not found"),
    (["check", "--corpus", "{corpus}", "--problems", "{run}/p.xlsx"], "unknown table format '.xlsx'"),
    (["prepare", "--corpus", "{run}"], "label file not found"),
    (["prepare", "--corpus", "{corpus}", "--origin-radius", "-1"], "--origin-radius: must be >= 0"),
    (["prepare", "--corpus", "{corpus}", "--regions", "octnat"], "invalid choice: 'octnat'"),
    (["evaluate", "--model", "{run}/model"], "no such model directory"),
    (["evaluate", "--model", "{run}/model", "--batch-size", "0"], "--batch-size: must be >= 1"),
    (["evaluate", "--model", "{run}/model", "--device", "cdua"], "'cdua' is not a torch device"),
    (["predict", "--model", "{run}/model", "--output", "{run}/p.csv", "a.wav"], "no such model directory"),
    (["predict", "--model", "m", "--output", "p.csv", "--window", "-1", "a.wav"], "--window: must be > 0"),
    (["export", "--model", "{run}/model", "--output", "{run}/m.onnx"], "no such model directory"),
    (
        [
            "predict",
            "--backend",
            "onnx",
            "--model",
            "{corpus}/Labels/labels_consensus.csv",
            "--output",
            "{run}/p.csv",
            "a.wav",
        ],
        "labels_consensus.csv: not a readable ONNX model",
    ),
    (["export", "--model", "m", "--output", "m.onnx", "--opset", "0"], "--opset: must be >= 1"),
    (["export", "--model", "m", "--output", "m.onnx", "--opset", "99"], "--opset 99: the installed onnx knows"),
    (["demo-corpus", "--output", "{run}", "--n-train", "-5"], "--n-train: must be >= 0"),
    (["demo-corpus", "--n-train", "5"], "give the output folder"),
    (["evaluate", "--model", "{corpus}"], "not an emosphere model directory"),
    (["predict", "--model", "{trained}", "--output", "{run}/p.csv", "a.wav"], "a training run directory; its model is"),
    (["trian"], "invalid choice: 'trian'"),
]


@pytest.mark.parametrize("argv, message", MISTAKES, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_user_mistakes_are_one_line_exit_2_and_write_nothing(
    argv, message, corpus, broken_corpus, trained_run, tmp_path, capsys
):
    run = tmp_path / "run"
    argv = [a.format(run=run, corpus=corpus, broken=broken_corpus, trained=trained_run) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exited:  # argparse's usage errors
        code = exited.code
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert message in last
    assert not run.exists()


def test_a_bug_keeps_its_traceback(monkeypatch, corpus):
    def broken(*args, **options):
        raise KeyError("a bug")

    monkeypatch.setattr("emosphere.check.check_corpus", broken)
    with pytest.raises(KeyError, match="a bug"):
        main(["check", "--corpus", str(corpus)])


def test_check_prints_a_summary_and_writes_every_problem(broken_corpus, tmp_path, capsys):
    assert main(["check", "--corpus", str(broken_corpus), "--quiet", "--problems", str(tmp_path / "p.csv")]) == 2
    out = capsys.readouterr().out
    assert "utterances per region (octant)" in out and "hours" in out
    problems = pd.read_csv(tmp_path / "p.csv")
    assert set(problems["problem"]) >= {"EmoAct must be a number in [1, 7]", "listed audio file not found"}


def test_check_with_a_config_runs_the_training_preflight(corpus, tmp_path, capsys):
    assert main(["check", "--config", TINY, f"data.corpus={corpus}", f"output_dir={tmp_path / 'run'}", "--quiet"]) == 0
    assert "Development" in capsys.readouterr().out
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["predict", "--help"], ["serve", "--help"], ["train", "--help"], ["train", "trainer.max_epoch=2"]],
)
def test_help_and_config_mistakes_answer_without_loading_torch(argv):
    # torch, transformers and lightning take seconds to import: only the commands that run a model load them
    script = (
        "import sys\nfrom emosphere.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print([m for m in ('torch', 'transformers', 'lightning') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == "[]"
