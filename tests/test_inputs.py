"""What a user asks to predict: files, folders, manifests, globs and arrays become sources."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from conftest import tone
from emosphere.audio import AudioError
from emosphere.inputs import ArraySource, InputError, as_sources, collect_inputs, load_source


@pytest.fixture
def tree(tmp_path) -> Path:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    for name in ("a.wav", "b.wav", "sub/c.flac", "sub/deeper/d.ogg"):
        sf.write(tmp_path / name, tone(16000, 0.2), 16000)
    (tmp_path / "notes.txt").write_text("not audio\n")
    return tmp_path


def test_folders_manifests_and_globs(tree):
    files = [str(tree / p) for p in ("a.wav", "b.wav", "sub/c.flac", "sub/deeper/d.ogg")]
    assert sorted(collect_inputs([tree])) == sorted(files)  # recursive, notes.txt ignored
    assert collect_inputs([str(tree / "**" / "*.ogg"), str(tree / "a.wav"), str(tree / "a.wav")]) == [
        str(tree / "sub" / "deeper" / "d.ogg"), str(tree / "a.wav")]
    pd.DataFrame({"FileName": ["a.wav", "sub/c.flac"], "x": [1, 2]}).to_csv(tree / "manifest.csv", index=False)
    (tree / "list.lst").write_text("# comment\nb.wav\n\n/abs/elsewhere.wav\n")
    assert collect_inputs([tree / "manifest.csv", tree / "list.lst"]) == [
        str(tree / "a.wav"), str(tree / "sub" / "c.flac"), str(tree / "b.wav"), "/abs/elsewhere.wav"]


@pytest.mark.parametrize("content, message", [("name\nx.wav\n", "column"), (None, "no such file")])
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
