"""How files are named in tables and messages (emosphere.names)."""

import os

from hypothesis import given
from hypothesis import strategies as st

from emosphere.names import identity, normalise, one_line, readable

POSIX_NAMES = st.binary(min_size=1, max_size=40).map(lambda b: b.replace(b"/", b"_").replace(b"\0", b"_"))


def test_a_name_that_is_not_utf8_or_does_not_print_is_escaped_readably():
    assert readable("plain/café-speech 01.wav") == "plain/café-speech 01.wav"  # almost every name: as it is
    assert readable(os.fsdecode(b"caf\xe9 \xff\xfe.wav")) == "caf\\xe9 \\xff\\xfe.wav"
    assert readable("new\nline\tand\x07bell\u2028.wav") == "new\\nline\\tand\\x07bell\\u2028.wav"
    assert readable("back\\slash.wav") == "back\\\\slash.wav"  # so that no name reads as an escape


@given(st.lists(POSIX_NAMES, min_size=2, max_size=2, unique=True))
def test_every_name_becomes_one_printable_line_and_no_two_alike(names):
    first, second = (readable(os.fsdecode(name)) for name in names)
    assert first.isprintable() and second.isprintable()
    assert first != second
    first.encode("utf-8")  # any table or terminal takes it


def test_a_message_becomes_one_line_of_text():
    name = os.fsdecode(b"x\xff.wav")
    assert one_line(f"Error opening {name}:\n  System error.") == "Error opening x\\xff.wav:   System error."


def test_paths_are_normalised_and_the_same_file_is_one_identity(tmp_path, monkeypatch):
    (tmp_path / "trial" / "real").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "trial")
    assert normalise("./real/../real/001.wav") == "real/001.wav"
    spellings = [
        "./real/../real/001.wav",
        "real/001.wav",
        "../trial/real/001.wav",
        str(tmp_path / "trial/real/001.wav"),
    ]
    assert {identity(path) for path in spellings} == {str(tmp_path / "trial" / "real" / "001.wav")}
