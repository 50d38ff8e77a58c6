"""What a user asks to predict: files, folders, manifests, segment tables, globs and arrays become sources."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import tone

from emosphere.audio import AudioError
from emosphere.inputs import ArraySource, InputError, Segment, as_sources, iter_inputs, load_source, source_key


@pytest.fixture
def tree(tmp_path) -> Path:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    for name in ("a.wav", "b.wav", "sub/c.flac", "sub/deeper/d.ogg"):
        sf.write(tmp_path / name, tone(16000, 0.2), 16000)
    (tmp_path / "notes.txt").write_text("not audio\n")
    return tmp_path


def collect_inputs(inputs):
    return list(iter_inputs(inputs))


def test_folders_manifests_and_globs(tree):
    files = [str(tree / p) for p in ("a.wav", "b.wav", "sub/c.flac", "sub/deeper/d.ogg")]
    assert sorted(collect_inputs([tree])) == sorted(files)  # recursive, notes.txt ignored
    assert collect_inputs([str(tree / "**" / "*.ogg"), str(tree / "a.wav"), str(tree / "a.wav")]) == [
        str(tree / "sub" / "deeper" / "d.ogg"),
        str(tree / "a.wav"),
    ]
    pd.DataFrame({"FileName": ["a.wav", "sub/c.flac"], "x": [1, 2]}).to_csv(tree / "manifest.csv", index=False)
    (tree / "list.lst").write_text("# comment\nb.wav\n\n/abs/elsewhere.wav\n")
    assert collect_inputs([tree / "manifest.csv", tree / "list.lst"]) == [
        str(tree / "a.wav"),
        str(tree / "sub" / "c.flac"),
        str(tree / "b.wav"),
        "/abs/elsewhere.wav",
    ]


@pytest.mark.parametrize("content, message", [("name\nx.wav\n", "column"), (None, "not found")])
def test_usage_mistakes_name_the_input(tmp_path, content, message):
    path = tmp_path / "manifest.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InputError, match=message):
        collect_inputs([path])
    with pytest.raises(InputError, match="no file matches"):
        collect_inputs([str(tmp_path / "*.flac")])


def test_arrays_need_a_rate_and_a_samples_first_shape(tree):
    mono = tone(22050, 0.3)
    sources = as_sources([mono, tree / "a.wav", np.stack([mono, mono], 1)], sampling_rate=22050)
    assert [getattr(s, "name", s) for s in sources] == ["array_0", str(tree / "a.wav"), "array_2"]
    assert load_source(sources[2]).shape == (len(load_source(sources[0])),)  # mixed down and resampled
    assert len(load_source(sources[0])) == pytest.approx(0.3 * 16000, abs=2)
    with pytest.raises(InputError, match="sampling_rate"):
        as_sources(mono, None)
    with pytest.raises(InputError, match="samples, channels"):
        as_sources(np.stack([mono, mono]), 16000)
    with pytest.raises(AudioError, match="bad: audio contains NaN"):
        load_source(ArraySource("bad", np.full(800, np.nan, np.float32), 16000))


def test_the_stream_is_lazy(tree):
    # a list file is read as the stream is consumed, and an input further on fails only when reached
    stream = iter_inputs([tree / "a.wav", tree / "missing.wav"])
    assert next(stream) == str(tree / "a.wav")
    with pytest.raises(InputError, match="missing.wav: not found"):
        next(stream)
    with open(tree / "list.txt", "w") as listing:
        listing.write("a.wav\n")
    stream = iter_inputs([tree / "list.txt"])
    assert next(stream) == str(tree / "a.wav")
    (tree / "list.txt").unlink()  # the rest of the list is no longer needed
    assert list(stream) == []


def test_segment_tables_give_segments_that_read_only_their_stretch(tree):
    sf.write(tree / "long.wav", np.arange(48000, dtype=np.float32) / 48000, 16000, subtype="FLOAT")  # 3 s ramp
    pd.DataFrame(
        {
            "file": ["long.wav", "long.wav", "a.wav", "long.wav"],
            "start": ["0.5", "0 days 00:00:01.250000", "", "0.5"],
            "end": ["1", "00:00:03", "", "1.0"],
        }
    ).to_csv(tree / "segments.csv", index=False)
    long = str(tree / "long.wav")
    assert collect_inputs([tree / "segments.csv"]) == [  # the repeated segment is kept once
        Segment(long, 0.5, 1.0),
        Segment(long, 1.25, 3.0),
        str(tree / "a.wav"),
    ]
    samples = load_source(Segment(long, 1.25, 3.0))
    np.testing.assert_allclose(samples, np.arange(20000, 48000) / 48000, atol=1e-6)
    assert source_key(Segment(long, 1.25, 3.0000000001)) == (long, 1.25, 3.0)
    with pytest.raises(AudioError, match="before the segment does"):
        load_source(Segment(long, 2.0, 3.5))
    with pytest.raises(AudioError, match="after the end of the audio"):
        load_source(Segment(long, 3.5, 4.0))
    # parquet tables with timedelta columns, as audinterface's segmented index holds them
    pd.DataFrame(
        {"file": ["long.wav"], "start": pd.to_timedelta([0.5], unit="s"), "end": pd.to_timedelta([1.5], unit="s")}
    ).to_parquet(tree / "segments.parquet")
    assert collect_inputs([tree / "segments.parquet"]) == [Segment(long, 0.5, 1.5)]


@pytest.mark.parametrize(
    "start, end, message",
    [
        ("2", "1", "row 2: a segment needs 0 <= start < end"),
        ("1", "", "row 2: a segment needs"),
        ("soon", "3", "row 2: start 'soon' is not a time"),
    ],
)
def test_bad_segment_rows_are_named(tree, start, end, message):
    pd.DataFrame({"file": ["a.wav", "a.wav"], "start": ["0", start], "end": ["0.1", end]}).to_csv(
        tree / "segments.csv", index=False
    )
    with pytest.raises(InputError, match=f"segments.csv {message}"):
        collect_inputs([tree / "segments.csv"])
