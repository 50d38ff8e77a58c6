import pandas as pd
import pytest

from emosphere.cli import build_parser, main


def test_prepare_writes_the_table_and_prints_counts(corpus, tmp_path, capsys):
    output = tmp_path / "labels.csv"
    assert main(["prepare", "--corpus", str(corpus), "--regions", "sphere60", "--output", str(output),
                 "--quiet"]) == 0
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


@pytest.mark.parametrize("command", ["prepare", "train", "evaluate", "demo-corpus"])
def test_every_option_is_explained(command):
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    for action in sub._actions:
        assert action.help, f"{command} {action.option_strings or action.dest} has no help"
