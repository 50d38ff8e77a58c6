"""The run report: every plot written, one self-contained HTML page, and the numbers behind the plots."""

import re
import shutil
from pathlib import Path

import pytest

from emosphere import evaluate
from emosphere.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


def test_report_of_a_run_without_evaluation(trained_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    assert main(["report", str(run), "--output", str(tmp_path / "report"), "--split", "Test1"]) == 0
    assert (run / "eval_Test1" / "predictions_full.csv").is_file()  # evaluated on the way
    pngs = sorted(p.name for p in (tmp_path / "report").glob("*.png"))
    assert pngs == [
        "bias.png",
        "confusion.png",
        "curves.png",
        "groups.png",
        "projections.png",
        "scatter.png",
        "sphere.png",
    ]
    assert all((tmp_path / "report" / p).read_bytes().startswith(PNG) for p in pngs)
    page = (tmp_path / "report" / "report.html").read_text()
    assert page.count("src='data:image/png;base64,") == len(pngs)
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", page)  # nothing fetched from a network
    assert "CCC per gender" in page and "Test1 (n=" in page


@pytest.mark.parametrize(
    "args, message",
    [
        (["report", "{tmp}/none", "--output", "{tmp}/out"], "no such run directory"),
        (["report", "{tmp}", "--output", "{tmp}/out"], "not a run directory"),
    ],
)
def test_report_mistakes_are_one_line(tmp_path, capsys, args, message):
    assert main([a.format(tmp=tmp_path) for a in args]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1


def test_a_split_that_is_not_in_the_run_is_named(trained_run, tmp_path, capsys):
    assert main(["report", str(trained_run), "--output", str(tmp_path), "--split", "Test9"]) == 2
    assert "Test9" in capsys.readouterr().err


def test_the_demo_s_evaluation_is_the_one_its_report_reads(trained_run, tmp_path, monkeypatch):
    # `make demo` evaluates Test1; `emosphere report runs/demo --split Test1` must not evaluate it again.
    recipe = (Path(__file__).parents[1] / "Makefile").read_text().split("\ndemo:")[1]
    command = next(line.split() for line in recipe.splitlines() if "emosphere evaluate" in line)
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    assert main([arg.replace("$(DEMO_DIR)", str(run)) for arg in command[1:]]) == 0
    monkeypatch.setattr(evaluate, "evaluate", lambda *args, **kwargs: pytest.fail("evaluated Test1 again"))
    assert main(["report", str(run), "--output", str(tmp_path / "report"), "--split", "Test1"]) == 0
