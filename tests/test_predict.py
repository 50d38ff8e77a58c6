"""Prediction for users: emosphere.predict, EmoSphereSER.predict and ``emosphere predict``."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import DEVICES, LARGE_WAVLM, random_model, tiny_model, tone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emosphere import EmoSphereSER, engine
from emosphere.backends import TorchBackend
from emosphere.cli import main
from emosphere.config import PRECISIONS, EncoderConfig, ModelConfig
from emosphere.engine import Options, Predictor
from emosphere.inputs import InputError
from emosphere.io import read_table
from emosphere.names import readable
from emosphere.predict import errors_path, parts_path, predict_to_file
from emosphere.ranks import Ranks

SR = 16000
signal = tone
REDUCED_PRECISION = {"tiny": {"bf16": 0.1, "fp16": 5e-3}, "large": {"bf16": 3e-2, "fp16": 1e-2}}
"""Largest |bf16 or fp16 - fp32| on [0, 1] of a random model. Measured on the CPU (torch 2.13): the tiny
model 7.2e-2 and 9.1e-4 (32 channels: sensitive), WavLM-large's shape with 2 layers 3.7e-3 and 6.2e-4,
a base-size one 7.3e-3 and 1.0e-3 (docs/benchmarks.md)."""


@pytest.fixture(scope="module")
def model() -> EmoSphereSER:
    return tiny_model()


@pytest.fixture(scope="module")
def model_dir(model, tmp_path_factory) -> str:
    return str(model.save_pretrained(tmp_path_factory.mktemp("model")))


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("audio")
    (root / "good" / "sub" / "deeper").mkdir(parents=True)
    (root / "bad").mkdir()
    sf.write(root / "good" / "a.wav", signal(SR, 1.0), SR)
    sf.write(root / "good" / "b.wav", signal(8000, 0.7, (300, 900)), 8000)
    stereo = signal(22050, 1.3, (250, 2000))
    sf.write(root / "good" / "sub" / "c.flac", np.stack([stereo, 0.5 * stereo], 1), 22050)
    sf.write(root / "good" / "sub" / "deeper" / "d.ogg", signal(44100, 0.9, (500, 1500)), 44100)
    (root / "good" / "notes.txt").write_text("not audio\n")
    rng = np.random.default_rng(0)
    sf.write(root / "long.wav", (signal(SR, 30.0) + 0.05 * rng.standard_normal(30 * SR)).astype(np.float32), SR)
    sf.write(root / "bad" / "short.wav", signal(SR, 0.01), SR)  # 160 samples < 400
    (root / "bad" / "corrupt.wav").write_bytes(b"RIFF" + rng.bytes(2000))
    return root


def good_files(audio: Path) -> list[str]:
    return [str(audio / "good" / p) for p in ("a.wav", "b.wav", "sub/c.flac", "sub/deeper/d.ogg")]


@pytest.fixture(scope="module")
def predicted(model, audio) -> pd.DataFrame:
    """The long file and the good files, predicted together in batches of 4 windows."""
    return model.predict([str(audio / "long.wav"), *good_files(audio)], batch_size=4)


def rows_of(table: pd.DataFrame, files: list[str]) -> pd.DataFrame:
    return pd.concat([table[table.file == f] for f in files], ignore_index=True)


def numeric(table: pd.DataFrame) -> np.ndarray:
    return table.select_dtypes("number").to_numpy()


def units(table: pd.DataFrame) -> np.ndarray:
    """Arousal, valence and dominance on [0, 1], row by row."""
    return table[[c for c in table if c.endswith("_unit")]].to_numpy()


def torchrun_predict(processes: int, *args: str) -> subprocess.CompletedProcess:
    """``torchrun --nproc-per-node PROCESSES -m emosphere predict ARGS``."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
    command += ["-m", "emosphere", "predict", *args]
    return subprocess.run(
        command, check=False, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True
    )


def test_batches_equal_one_file_at_a_time(model, audio, predicted):
    files = [str(audio / "long.wav"), *good_files(audio)]
    batched = predicted
    alone = pd.concat([model.predict(f, batch_size=1) for f in files], ignore_index=True)
    assert list(batched.loc[batched.level == "file", "file"]) == files  # input order restored after bucketing
    pd.testing.assert_frame_equal(
        batched.drop(columns=list(batched.select_dtypes("number"))),
        alone.drop(columns=list(alone.select_dtypes("number"))),
    )
    np.testing.assert_allclose(numeric(batched), numeric(alone), atol=1e-4, rtol=0)


def test_long_audio_gets_window_rows_and_a_duration_weighted_file_row(model, audio, predicted):
    table = rows_of(predicted, [str(audio / "long.wav")])
    assert list(table.level) == ["file"] + ["window"] * 4
    assert table[["start", "end"]].to_numpy().tolist() == [[0, 30], [0, 12], [6, 18], [12, 24], [18, 30]]
    file_row, windows = table.iloc[0], table.iloc[1:]
    units = [c for c in table if c.endswith("_unit")]
    probs = [c for c in table if c.startswith("p_")]
    np.testing.assert_allclose(file_row[units + probs].astype(float), windows[units + probs].mean(), atol=1e-6)
    assert file_row.region_classifier == probs[int(np.argmax(windows[probs].mean()))].removeprefix("p_")
    np.testing.assert_allclose(
        file_row[["arousal", "valence", "dominance"]].astype(float), 1 + 6 * file_row[units].astype(float), atol=1e-6
    )
    assert windows[units + probs].std().max() > 1e-4  # the windows differ, so the mean is not trivial
    # a window row is the prediction of that stretch of audio alone
    samples, _ = sf.read(audio / "long.wav", dtype="float32")
    alone = model.predict(samples[6 * SR : 18 * SR], SR)
    np.testing.assert_allclose(numeric(windows.iloc[[1]])[:, 2:], numeric(alone)[:, 2:], atol=1e-4, rtol=0)


def test_resampled_and_stereo_audio_match_16k_mono(model, tmp_path):
    x = signal(44100, 1.5)
    y = 0.05 * np.random.default_rng(1).standard_normal(len(x)).astype(np.float32)
    sf.write(tmp_path / "stereo44k.wav", np.stack([x + y, x - y], 1), 44100)  # mixes down to x
    sf.write(tmp_path / "mono8k.flac", signal(8000, 1.5), 8000)
    reference = model.predict(signal(SR, 1.5), SR)
    columns = [c for c in reference if c.endswith("_unit") or c.startswith("p_")]
    for name in ("stereo44k.wav", "mono8k.flac"):
        table = model.predict(str(tmp_path / name))
        np.testing.assert_allclose(table[columns], reference[columns], atol=1e-3)
    other = model.predict(signal(SR, 1.5, (300, 700, 2000)), SR)  # the tolerance does tell signals apart
    assert np.abs(other[columns].to_numpy() - reference[columns].to_numpy()).max() > 1e-2


def test_api_arrays_need_a_sampling_rate_and_are_named(model):
    mono = signal(SR, 0.5)
    with pytest.raises(InputError, match="sampling_rate"):
        model.predict(mono)
    with pytest.raises(ValueError, match="samples, channels"):
        model.predict(np.stack([mono, mono]), SR)
    stereo = np.stack([signal(22050, 0.5), signal(22050, 0.5)], 1)
    table = model.predict([mono, stereo, np.zeros(100, np.float32)], sampling_rate=22050)
    assert list(table.file) == ["array_0", "array_1"]
    assert [file for file, _ in table.attrs["errors"]] == ["array_2"]
    assert table.attrs["errors"][0][1].startswith("too short")
    assert list(table.columns[:4]) == ["file", "level", "start", "end"]
    assert table.end.tolist() == pytest.approx([0.5 * SR / 22050, 0.5], abs=1e-3)


def test_cli_skips_and_reports_bad_files_and_exits_1(model_dir, audio, tmp_path):
    output = tmp_path / "out.csv"
    bad = [str(audio / "bad" / "corrupt.wav"), str(audio / "bad" / "short.wav")]
    code = main(
        [
            "predict",
            "--model",
            model_dir,
            "--output",
            str(output),
            str(audio / "good"),
            *bad,
            "--workers",
            "2",
            "--quiet",
        ]
    )
    assert code == 1
    table = read_table(output)
    assert sorted(table.file) == sorted(good_files(audio))  # folder searched recursively, notes.txt ignored
    assert set(table.level) == {"file"} and table.region_classifier.notna().all()
    errors = pd.read_csv(errors_path(output))
    assert list(errors.columns) == ["file", "error"] and list(errors.file) == bad
    assert "cannot read audio" in errors.error[0] and errors.error[1].startswith("too short")
    assert sorted(os.listdir(tmp_path)) == ["out.csv", "out.errors.csv"]  # no temporary files left
    # nothing readable: an output with the columns and no rows
    assert main(["predict", "--model", model_dir, "--output", str(tmp_path / "none.csv"), bad[1], "--quiet"]) == 1
    assert read_table(tmp_path / "none.csv").columns[:5].tolist() == ["file", "level", "start", "end", "arousal"]


def test_cli_usage_errors_exit_2(model_dir, audio, tmp_path):
    output = ["--model", model_dir, "--output", str(tmp_path / "out.csv"), "--quiet"]
    assert main(["predict", *output, str(audio / "missing.wav")]) == 2
    assert main(["predict", *output, str(audio / "good" / "*.mp3")]) == 2  # a glob that matches nothing
    assert main(["predict", *output, "--window", "2", "--hop", "3", str(audio / "good")]) == 2
    assert (
        main(
            ["predict", "--model", str(tmp_path / "no-model"), "--output", str(tmp_path / "o.csv"), str(audio / "good")]
        )
        == 2
    )
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("suffix, names", [(".jsonl", ["good/a.wav", "long.wav"]), (".parquet", ["good/b.wav"])])
def test_cli_writes_jsonl_and_parquet(model_dir, audio, predicted, tmp_path, suffix, names):
    files = [str(audio / name) for name in names]
    output = tmp_path / f"predictions{suffix}"
    assert main(["predict", "--model", model_dir, "--output", str(output), *files, "--quiet"]) == 0
    table, expected = read_table(output), rows_of(predicted, files)
    assert list(table.columns) == list(expected.columns) and list(table.level) == list(expected.level)
    np.testing.assert_allclose(numeric(table), numeric(expected), atol=1e-5)
    assert not errors_path(output).exists()


def test_resume_keeps_finished_files_and_appends_the_rest(model_dir, audio, tmp_path):
    a, b = str(audio / "good" / "a.wav"), str(audio / "good" / "b.wav")
    output = tmp_path / "out.csv"
    (tmp_path / "list.txt").write_text(f"# manifest\n{a}\n\n{b}\n")
    assert main(["predict", "--model", model_dir, "--output", str(output), a, "--quiet"]) == 0
    first = read_table(output)
    first.loc[0, "arousal"] = 99.0  # a sentinel: a resumed run must not predict a.wav again
    first.to_csv(output, index=False)
    assert (
        main(
            [
                "predict",
                "--model",
                model_dir,
                "--output",
                str(output),
                str(tmp_path / "list.txt"),
                "--resume",
                "--quiet",
            ]
        )
        == 0
    )
    table = read_table(output)
    assert list(table.file) == [a, b] and table.arousal[0] == 99.0 and table.arousal[1] != 99.0
    assert main(["predict", "--model", model_dir, "--output", str(output), a, b, "--quiet"]) == 0
    assert read_table(output).arousal[0] != 99.0  # without --resume the output is rewritten


class InterruptedOnSecondBatch(TorchBackend):
    def __init__(self, model):
        super().__init__(model)
        self.calls = 0

    def __call__(self, waveform, lengths):
        self.calls += 1
        if self.calls == 2:
            raise KeyboardInterrupt
        return super().__call__(waveform, lengths)


def test_interrupted_run_leaves_a_complete_table_to_resume_from(model, audio, tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "POOL_BATCHES", 1)  # one file per pool at batch size 1
    output = tmp_path / "out.parquet"
    with pytest.raises(KeyboardInterrupt):
        predict_to_file(Predictor(InterruptedOnSecondBatch(model), Options(batch_size=1)), good_files(audio), output)
    assert list(read_table(output).file) == good_files(audio)[:1]
    assert (
        predict_to_file(
            Predictor(TorchBackend(model), Options(batch_size=1)), good_files(audio), output, resume=True
        ).failures
        == []
    )
    assert list(read_table(output).file) == good_files(audio)


def test_saved_model_predicts_the_same_without_training_code(model, audio, predicted, tmp_path):
    model.save_pretrained(tmp_path / "model")
    files = good_files(audio)[:2]
    script = (
        "import sys\n"
        "from emosphere import EmoSphereSER\n"
        f"model = EmoSphereSER.from_pretrained({str(tmp_path / 'model')!r})\n"
        f"model.predict({files!r}).to_csv({str(tmp_path / 'loaded.csv')!r}, index=False)\n"
        "training = sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'torchmetrics')\n"
        "                  or m in ('emosphere.train', 'emosphere.labels', 'emosphere.losses'))\n"
        "assert not training, training\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    loaded, expected = pd.read_csv(tmp_path / "loaded.csv"), rows_of(predicted, files)
    assert list(loaded.columns) == list(expected.columns)
    np.testing.assert_allclose(numeric(loaded), numeric(expected), atol=1e-6)


def test_unknown_output_format_is_a_usage_error(tmp_path, model_dir, capsys):
    sf.write(tmp_path / "a.wav", np.zeros(16000, np.float32), 16000)
    assert (
        main(["predict", "--model", str(model_dir), "--output", str(tmp_path / "out.txt"), str(tmp_path / "a.wav")])
        == 2
    )
    assert "unknown table format '.txt'" in capsys.readouterr().err
    assert not (tmp_path / "out.txt").exists()


def test_segments_are_predicted_from_their_stretch_and_keyed_by_file_start_end(model_dir, model, audio, tmp_path):
    long, short = str(audio / "long.wav"), str(audio / "good" / "a.wav")
    pd.DataFrame({"file": [long, long, short], "start": [2.5, 5.0, None], "end": [4.0, 25.0, None]}).to_csv(
        tmp_path / "segments.csv", index=False
    )
    output = tmp_path / "out.csv"
    assert (
        main(["predict", "--model", model_dir, "--output", str(output), str(tmp_path / "segments.csv"), "--quiet"]) == 0
    )
    table = read_table(output)
    assert table.level.tolist() == ["segment", "segment", "window", "window", "window", "file"]
    # times are seconds in the file: the 20 s segment's windows start at 5 + 0, 6 and 8 s
    assert table[["start", "end"]].to_numpy().tolist() == [[2.5, 4], [5, 25], [5, 17], [11, 23], [13, 25], [0, 1]]
    samples, _ = sf.read(long, dtype="float32")
    for row, (start, end) in [(0, (2.5, 4.0)), (3, (11.0, 23.0))]:  # each predicted from its stretch alone
        alone = model.predict(samples[int(start * SR) : int(end * SR)], SR)
        np.testing.assert_allclose(numeric(table.iloc[[row]])[:, 2:], numeric(alone)[:, 2:], atol=1e-4, rtol=0)
    # resume knows a segment by its file, start and end
    table.loc[0, "arousal"] = 99.0
    table.to_csv(output, index=False)
    pd.DataFrame({"file": [long, long], "start": [2.5, 2.5], "end": [4.0, 4.5]}).to_csv(
        tmp_path / "more.csv", index=False
    )
    assert (
        main(
            [
                "predict",
                "--model",
                model_dir,
                "--output",
                str(output),
                str(tmp_path / "segments.csv"),
                str(tmp_path / "more.csv"),
                "--resume",
                "--quiet",
            ]
        )
        == 0
    )
    resumed = read_table(output)
    assert resumed.arousal[0] == 99.0 and len(resumed) == len(table) + 1
    assert resumed.iloc[-1][["level", "start", "end"]].tolist() == ["segment", 2.5, 4.5]


class Uncoordinated(Ranks):
    """A process of a distributed run that never meets the others (its barriers return at once)."""

    def barrier(self):
        pass

    def broadcast(self, value):
        return value

    def sum(self, values):
        return list(values)


def test_a_process_that_dies_leaves_complete_chunks_and_any_count_resumes(model, audio, tmp_path, monkeypatch):
    files = [str(audio / "long.wav"), *good_files(audio), str(audio / "bad" / "short.wav")]
    single = tmp_path / "single.csv"
    predict_to_file(Predictor(TorchBackend(model), Options(batch_size=1)), files, single)
    monkeypatch.setattr(engine, "POOL_BATCHES", 1)  # at batch size 1: a pool per window
    monkeypatch.setattr("emosphere.predict.CHUNK_SOURCES", 1)  # a chunk per source
    output = tmp_path / "out.csv"
    with pytest.raises(KeyboardInterrupt):  # rank 1 of 2 (files 1, 3 and 5) dies in its second file
        predict_to_file(
            Predictor(InterruptedOnSecondBatch(model), Options(batch_size=1)), files, output, ranks=Uncoordinated(1, 2)
        )
    written = sorted(os.listdir(parts_path(output)))
    assert len(written) == 1 and written[0].endswith(".part-1-of-2.000000.csv") and not output.exists()
    # rank 0 finishes its share, but the output waits for a part that was never marked done
    with pytest.raises(RuntimeError, match=r"parts \[1\] of 2 did not finish"):
        predict_to_file(
            Predictor(TorchBackend(model), Options(batch_size=1)), files, output, ranks=Uncoordinated(0, 2), resume=True
        )
    assert not output.exists()
    # one process resumes: it predicts what is left and merges everything in input order
    summary = predict_to_file(Predictor(TorchBackend(model), Options(batch_size=1)), files, output, resume=True)
    assert summary.sources == 2 and [file for file, _ in summary.failures] == [files[-1]]  # b.wav, d.ogg left
    assert output.read_text() == single.read_text() and not parts_path(output).exists()
    assert pd.read_csv(errors_path(output)).file.tolist() == [files[-1]]


def test_two_processes_under_torchrun_write_the_single_process_table(model_dir, audio, tmp_path):
    inputs = [str(audio / "long.wav"), str(audio / "good"), str(audio / "bad")]
    options = ["--model", model_dir, "--batch-size", "1", "--threads", "1", "--quiet"]  # the same arithmetic
    assert main(["predict", *inputs, *options, "--output", str(tmp_path / "single.csv")]) == 1
    done = torchrun_predict(2, *inputs, *options, "--output", str(tmp_path / "two.csv"))
    assert done.returncode == 1, done.stderr[-2000:]  # both processes exit 1: a file failed
    assert "2 process(es)" in done.stdout and "could not be predicted" in done.stdout
    assert (tmp_path / "two.csv").read_text() == (tmp_path / "single.csv").read_text()
    assert (tmp_path / "two.errors.csv").read_text() == (tmp_path / "single.errors.csv").read_text()
    assert sorted(os.listdir(tmp_path)) == ["single.csv", "single.errors.csv", "two.csv", "two.errors.csv"]


@pytest.mark.parametrize("device", DEVICES)
def test_fp32_batches_equal_one_at_a_time_and_bf16_fp16_stay_near_fp32(device, record_property):
    """On CUDA with WavLM-large's architecture: fp32 runs without TF32, which rounds differently for each
    batch shape (1.8e-4 seen on an H100 with it on)."""
    shape = "large" if device == "cuda" else "tiny"
    if shape == "large":
        encoder = EncoderConfig(name="wavlm-large-random", pretrained=False, config=LARGE_WAVLM)
        model = random_model(ModelConfig(encoder=encoder))
    else:
        model = tiny_model()
    model.to(device)
    rng = np.random.default_rng(0)
    audio = [
        (signal(SR, s) + 0.02 * rng.standard_normal(int(s * SR))).astype(np.float32) for s in (1, 2.8, 11, 0.6, 20)
    ]
    batched = model.predict(audio, SR, batch_size=8)
    alone = pd.concat([model.predict(wave, SR, batch_size=1) for wave in audio], ignore_index=True)
    assert len(batched) == len(alone) == 5 + 3  # 20 s: a file row and 3 windows
    parity = float(np.abs(units(batched) - units(alone)).max())
    record_property("fp32_batch_parity", parity)
    assert parity <= 1e-4
    for precision, bound in REDUCED_PRECISION[shape].items():
        deviation = float(
            np.abs(units(model.predict(audio, SR, batch_size=8, precision=precision)) - units(batched)).max()
        )
        record_property(f"{precision}_deviation_from_fp32", deviation)
        assert deviation <= bound, precision


@pytest.mark.cuda
@pytest.mark.parametrize("precision", PRECISIONS)
def test_predict_on_cuda_writes_the_cpu_table_in_each_precision(model_dir, audio, predicted, tmp_path, precision):
    files = [str(audio / "long.wav"), *good_files(audio)]
    output = tmp_path / "cuda.csv"
    options = ["--device", "cuda", "--precision", precision, "--batch-size", "4", "--quiet"]
    assert main(["predict", *files, "--model", model_dir, *options, "--output", str(output)]) == 0
    table = read_table(output)
    assert list(table.columns) == list(predicted.columns) and list(table.file) == list(predicted.file)
    bound = 1e-5 if precision == "fp32" else REDUCED_PRECISION["tiny"][precision]
    assert np.abs(units(table) - units(predicted)).max() <= bound


@pytest.mark.cuda
def test_torchrun_one_process_on_cuda_writes_the_single_process_table(model_dir, audio, tmp_path):
    inputs = [str(audio / "long.wav"), str(audio / "good")]
    options = ["--model", model_dir, "--device", "cuda", "--quiet"]
    assert main(["predict", *inputs, *options, "--output", str(tmp_path / "single.csv")]) == 0
    done = torchrun_predict(1, *inputs, *options, "--output", str(tmp_path / "torchrun.csv"))
    assert done.returncode == 0, done.stderr[-2000:]
    single, launched = read_table(tmp_path / "single.csv"), read_table(tmp_path / "torchrun.csv")
    assert list(launched.file) == list(single.file)
    np.testing.assert_allclose(numeric(launched), numeric(single), atol=1e-6, rtol=0)


def test_the_onnx_backend_without_onnxruntime_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # importing it now fails
    monkeypatch.delitem(sys.modules, "emosphere.backends", raising=False)
    sf.write(tmp_path / "a.wav", tone(16000, 1.0), 16000)
    assert (
        main(
            [
                "predict",
                "--backend",
                "onnx",
                "--model",
                str(tmp_path / "m.onnx"),
                "--output",
                str(tmp_path / "out.csv"),
                str(tmp_path / "a.wav"),
            ]
        )
        == 2
    )
    error = capsys.readouterr().err.strip()
    assert "pip install 'emosphere[onnx]'" in error and len(error.splitlines()) == 1
    assert not (tmp_path / "out.csv").exists()


ODD_NAMES = st.binary(min_size=1, max_size=60).map(lambda b: b.replace(b"/", b"_").replace(b"\0", b"_"))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    names=st.lists(ODD_NAMES, min_size=1, max_size=4, unique=True),
    long=st.booleans(),
    suffix=st.sampled_from([".csv", ".jsonl", ".parquet"]),
)
def test_any_file_name_the_os_allows_is_predicted_or_listed_and_the_output_is_written(
    model, tmp_path_factory, names, long, suffix
):
    # Names of any bytes but "/" and NUL: not UTF-8, newlines, up to the 255-byte limit of a name.
    folder = tmp_path_factory.mktemp("names") / "in"
    folder.mkdir()
    good, bad = set(), set()
    for i, name in enumerate(names):
        path = os.path.join(os.fsencode(folder), name + (b"\xe9" * 180 if long else b"") + b".wav")
        with open(path, "wb") as out:
            if i % 2:  # every other file cannot be decoded
                out.write(b"RIFF not audio")
            else:
                sf.write(out, signal(SR, 0.2), SR, format="WAV")
        (bad if i % 2 else good).add(readable(os.fsdecode(path)))
    output = folder.parent / f"out{suffix}"
    summary = predict_to_file(Predictor(TorchBackend(model)), [str(folder)], output)
    assert set(read_table(output).file) == good and summary.sources == len(good)
    errors = pd.read_csv(errors_path(output), dtype=str, keep_default_na=False) if bad else pd.DataFrame({"file": []})
    assert set(errors.file) == bad and summary.failed == len(bad)
    assert not parts_path(output).exists()


def test_three_spellings_of_one_file_are_one_source_and_a_missing_one_is_not_found(
    model_dir, audio, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(audio)
    spellings = ["./good/../good/a.wav", "good/a.wav", f"../{audio.name}/good/a.wav", str(audio / "good" / "a.wav")]
    (tmp_path / "list.txt").write_text(f"{audio}/good/missing.wav\n")
    output = tmp_path / "out.csv"
    assert main(["predict", "--model", model_dir, "--output", str(output), *spellings, str(tmp_path / "list.txt")]) == 1
    assert list(read_table(output).file) == ["good/a.wav"]
    errors = pd.read_csv(errors_path(output))
    assert errors.to_dict("records") == [{"file": f"{audio}/good/missing.wav", "error": "not found"}]
    assert f"wrote {output}: 1 source(s), " in capsys.readouterr().out


def test_a_resumed_run_counts_every_source_of_the_output(model_dir, audio, tmp_path, capsys):
    a, b = str(audio / "good" / "a.wav"), str(audio / "good" / "b.wav")
    output = tmp_path / "out.jsonl"
    assert main(["predict", "--model", model_dir, "--output", str(output), a, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["predict", "--model", model_dir, "--output", str(output), a, b, "--resume", "--quiet"]) == 0
    assert f"wrote {output}: 2 source(s) (1 kept from an earlier run, 1 predicted now)" in capsys.readouterr().out
    assert f'"file":"{a}"' in output.read_text()  # JSON lines keep slashes as they are
