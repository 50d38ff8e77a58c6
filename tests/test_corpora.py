"""Converters, on corpora generated in each published layout (no corpus data is shipped)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import tone

from emosphere.corpora import convert
from emosphere.labels import Corpus, prepare_labels
from emosphere.manifest import MANIFEST_COLUMNS, write_manifest
from emosphere.problems import LabelError
from emosphere.sphere import RegionSet

IEMOCAP_HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]"
RATER_LINES = [
    "C-E2:\tNeutral;\t()",
    "C-E3:\tAnger;\t(irritated)",
    "A-E3:\tval 3; act 2; dom  2;\t()",
    "A-F1:\tval 3; act 2; dom  1;\t()",
]


def write_wav(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(16000, seconds), 16000)


def write_iemocap(root: Path, per_dialogue: int = 3, seed: int = 0) -> pd.DataFrame:
    """IEMOCAP_full_release's layout: per session, an improvised and a scripted dialogue, each with its
    EmoEvaluation file (utterance lines, rater lines), sentence wavs, and the Categorical/ subfolder
    that the converter must not read. Returns what each utterance line says."""
    rng = np.random.default_rng(seed)
    written = []
    for session in range(1, 6):
        base = root / f"Session{session}"
        for dialogue in (f"Ses{session:02d}F_impro01", f"Ses{session:02d}M_script01_1"):
            lines, start = [IEMOCAP_HEADER, ""], 3.0
            for i in range(per_dialogue):
                gender = "FM"[i % 2]
                name = f"{dialogue}_{gender}{i:03d}"
                valence, arousal, dominance = np.round(rng.uniform(1, 5, 3), 4)
                emotion = rng.choice(["neu", "ang", "hap", "sad", "fru", "exc", "xxx"])
                seconds = rng.uniform(0.3, 0.6)
                lines += [
                    f"[{start:.4f} - {start + seconds:.4f}]\t{name}\t{emotion}\t"
                    f"[{valence:.4f}, {arousal:.4f}, {dominance:.4f}]",
                    *RATER_LINES,
                    "",
                ]
                write_wav(base / "sentences" / "wav" / dialogue / f"{name}.wav", seconds)
                written.append((name, valence, arousal, dominance, emotion, session, gender))
                start += seconds + 1.5
            evaluation = base / "dialog" / "EmoEvaluation" / f"{dialogue}.txt"
            evaluation.parent.mkdir(parents=True, exist_ok=True)
            evaluation.write_text("\n".join(lines) + "\n")
            (evaluation.parent / "Categorical").mkdir(exist_ok=True)
            (evaluation.parent / "Categorical" / f"{dialogue}_e2_cat.txt").write_text(f"{dialogue}_F000 :Neutral; ()\n")
    return pd.DataFrame(written, columns=["name", "valence", "arousal", "dominance", "emotion", "session", "gender"])


def improv_name(sentence: int, emotion: str, gender: str, session: int, kind: str, take: int) -> str:
    return f"S{sentence:02d}{emotion}-{gender}{session:02d}-{kind}-{'FM' if gender == 'F' else 'MF'}{take:02d}"


def write_msp_improv(root: Path, seed: int = 0) -> pd.DataFrame:
    """MSP-IMPROV's layout: Evalution.txt (sic) with an utterance line and its raters' lines each,
    audio under Audio/session<N>/<sentence>/<kind>/. Returns what each utterance line says."""
    rng = np.random.default_rng(seed)
    lines, written = [], []
    for session in range(1, 7):
        for k, (gender, kind) in enumerate((("F", "R"), ("M", "P"), ("F", "S"))):
            name = improv_name(k + 1, "AHSN"[k], gender, session, kind, 1)
            arousal, valence, dominance, natural = np.round(rng.uniform(1, 5, 4), 6)
            emotion = "AHSNOX"[(session + k) % 6]
            lines += [
                f"UTD-IMPROV-{name}.avi; {emotion}; A:{arousal:f}; V:{valence:f}; D:{dominance:f}; N:{natural:f};",
                "A1; Angry; Frustrated; A:4.000000; V:1.000000; D:4.000000; N:3.000000;",
                "A2; Neutral; ; A:3.000000; V:3.000000; D:3.000000; N:4.000000;",
                "",
            ]
            write_wav(root / "Audio" / f"session{session}" / name[:4] / kind / f"MSP-IMPROV-{name}.wav", 0.4)
            written.append((f"MSP-IMPROV-{name}.wav", arousal, valence, dominance, emotion, session, gender))
    (root / "Evalution.txt").write_text("\n".join(lines) + "\n")
    return pd.DataFrame(written, columns=["name", "arousal", "valence", "dominance", "emotion", "session", "gender"])


def test_iemocap_utterance_lines_become_manifest_rows(tmp_path):
    written = write_iemocap(tmp_path / "IEMOCAP")
    (tmp_path / "IEMOCAP" / "Session1" / "dialog" / "EmoEvaluation" / "._Ses01F_impro01.txt").write_bytes(b"\x00\x05")
    conversion = convert("iemocap", tmp_path / "IEMOCAP")
    assert conversion.problems.empty
    manifest = conversion.manifest
    assert list(manifest.columns[:6]) == ["name", *MANIFEST_COLUMNS]
    assert manifest["name"].tolist() == [f"{n}.wav" for n in written["name"]]
    for column in ("valence", "arousal", "dominance"):  # the file's triple is [V, A, D]
        np.testing.assert_array_equal(manifest[column], written[column])
    assert manifest["emotion"].tolist() == written["emotion"].tolist()  # the corpus's own categories
    assert manifest["speaker"].tolist() == [f"Ses{s:02d}{g}" for s, g in zip(written["session"], written["gender"])]
    assert set(manifest["gender"]) == {"Female", "Male"} and set(manifest["split"]) == {"Test"}
    assert all(Path(p).is_file() and Path(p).is_absolute() for p in manifest["path"])
    assert (manifest["scale_min"] == 1).all() and (manifest["scale_max"] == 5).all()
    assert manifest.loc[0, "dialogue"] == "Ses01F_impro01" and manifest.loc[0, "start"] == 3.0
    assert "30 utterance(s), labels on the 1-5 scale; 0 error(s)" in conversion.summary()


@pytest.mark.parametrize("fold, development", [(5, 4), (1, 5)])
def test_iemocap_folds_leave_one_session_out(tmp_path, fold, development):
    write_iemocap(tmp_path / "IEMOCAP", per_dialogue=2)
    manifest = convert("iemocap", tmp_path / "IEMOCAP", fold=fold).manifest
    sessions = manifest.groupby("split")["session"].unique().map(sorted).to_dict()
    assert sessions["Test"] == [fold] and sessions["Development"] == [development]
    assert sessions["Train"] == sorted(set(range(1, 6)) - {fold, development})
    with pytest.raises(LabelError, match="fold 6: iemocap has sessions 1-5"):
        convert("iemocap", tmp_path / "IEMOCAP", fold=6)


def test_iemocap_bad_and_unknown_lines_are_reported_with_file_and_line(tmp_path):
    write_iemocap(tmp_path / "IEMOCAP", per_dialogue=2)
    path = tmp_path / "IEMOCAP" / "Session2" / "dialog" / "EmoEvaluation" / "Ses02F_impro01.txt"
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace("[", "[x", 1)  # line 3: the first utterance line, start time not a number
    lines.insert(5, "Some note someone left")  # line 6
    lines += [
        "[1.0 - 2.0]\tSes02F_impro01_F009\tneu\t[2.5000, 6.0000, 3.0000]",  # line 16: arousal off the scale
        "[3.0 - 4.0]\tSes03F_impro01_F010\tneu\t[2.5000, 2.0000, 3.0000]",  # line 17: another session's name
    ]
    path.write_text("\n".join(lines) + "\n")
    conversion = convert("iemocap", tmp_path / "IEMOCAP")
    problems = conversion.problems
    where = {(p, int(line)) for p, f, line in zip(problems["problem"], problems["file"], problems["line"])}
    assert where == {
        ("malformed utterance line", 3),
        ("unknown line (skipped)", 6),
        ("label outside [1, 5]", 16),
        ("utterance name not of the form Ses02?_<dialogue>_<F|M><number> of Ses02F_impro01", 17),
    }
    assert (problems["file"] == str(path)).all()
    assert len(conversion.manifest) == 5 * 2 * 2 - 1  # 2 per dialogue, less the malformed one
    with pytest.raises(LabelError, match=r"Ses02F_impro01.txt: malformed utterance line; bad value on line\(s\) \[3\]"):
        conversion.raise_for_errors()


def test_msp_improv_lines_become_manifest_rows(tmp_path):
    written = write_msp_improv(tmp_path / "MSP-IMPROV")
    conversion = convert("msp-improv", tmp_path / "MSP-IMPROV", fold=2)
    assert conversion.problems.empty  # rater lines are skipped
    manifest = conversion.manifest
    assert manifest["name"].tolist() == written["name"].tolist()
    for column in ("arousal", "valence", "dominance"):
        np.testing.assert_array_equal(manifest[column], written[column])
    assert manifest["speaker"].tolist() == [f"{g}{s:02d}" for g, s in zip(written["gender"], written["session"])]
    assert manifest["session"].tolist() == written["session"].tolist()
    assert all(Path(p).name == n and Path(p).is_file() for p, n in zip(manifest["path"], manifest["name"]))
    sessions = manifest.groupby("split")["session"].unique().map(sorted).to_dict()
    assert sessions == {"Test": [2], "Development": [1], "Train": [3, 4, 5, 6]}


def test_msp_improv_bad_lines_and_missing_audio_are_reported_with_file_and_line(tmp_path):
    written = write_msp_improv(tmp_path / "MSP-IMPROV")
    path = tmp_path / "MSP-IMPROV" / "Evalution.txt"
    lines = path.read_text().splitlines()
    lines[0] = lines[0].replace("A:", "A=")  # line 1
    lines.insert(8, "THIS IS NOT A LINE OF THE FILE")  # line 9
    path.write_text("\n".join(lines) + "\n")
    next((tmp_path / "MSP-IMPROV" / "Audio").rglob(written["name"].iloc[1])).unlink()  # its line is 5
    problems = convert("msp-improv", tmp_path / "MSP-IMPROV").problems
    assert {(p, int(line)) for p, line in zip(problems["problem"], problems["line"])} == {
        ("malformed utterance line", 1),
        (f"no audio file {written['name'].iloc[1]} under {tmp_path / 'MSP-IMPROV' / 'Audio'}", 5),
        ("unknown line (skipped)", 9),
    }
    assert problems.set_index("problem")["severity"].to_dict()["unknown line (skipped)"] == "warning"


@pytest.mark.parametrize("keep_other", [False, True])
def test_a_manifest_of_an_msp_podcast_corpus_prepares_as_the_msp_podcast_reader_does(corpus, tmp_path, keep_other):
    conversion = convert("msp-podcast", corpus, keep_other=keep_other)
    conversion.raise_for_errors()
    write_manifest(conversion.manifest, tmp_path / "msp.csv")
    regions = RegionSet("sphere45")
    direct = prepare_labels(Corpus.at(corpus), regions, keep_other=keep_other, progress=False)
    listed = prepare_labels(Corpus.manifest(tmp_path / "msp.csv"), regions, progress=False)
    pd.testing.assert_frame_equal(listed[direct.columns], direct, check_exact=True)
    assert "scale_min" in listed and "scale_min" not in direct  # the MSP-Podcast path is unchanged


def test_options_a_format_does_not_take_are_named(tmp_path):
    with pytest.raises(LabelError, match="--labels: not an option of --format iemocap"):
        convert("iemocap", tmp_path, labels=tmp_path / "x.txt")
    with pytest.raises(LabelError, match="unknown corpus format 'vam'; known: iemocap, msp-improv, msp-podcast"):
        convert("vam", tmp_path)
    with pytest.raises(LabelError, match="no Session1 ... Session5 folders"):
        convert("iemocap", tmp_path)
    with pytest.raises(LabelError, match="Evalution.txt: label file not found"):
        convert("msp-improv", tmp_path)


def test_a_model_is_evaluated_on_a_converted_corpus_with_intervals_on_its_scale(tmp_path):
    """Cross-corpus evaluation as the library does it: convert, prepare, evaluate, intervals, report
    the predictions on the corpus's 1-5."""
    from conftest import tiny_model

    from emosphere.backends import TorchBackend
    from emosphere.bootstrap import score_intervals, speaker_groups
    from emosphere.engine import Predictor
    from emosphere.evaluate import evaluate
    from emosphere.labels import LABEL_COLUMNS, split, table_scale

    write_iemocap(tmp_path / "IEMOCAP", per_dialogue=2)
    write_manifest(convert("iemocap", tmp_path / "IEMOCAP").manifest, tmp_path / "iemocap.csv")
    model = tiny_model()
    rows = split(prepare_labels(Corpus.open(tmp_path / "iemocap.csv"), model.regions, progress=False), "Test")
    metrics, predictions = evaluate(Predictor(TorchBackend(model)), rows, model.regions, split="Test")
    assert metrics["n"] == 20 and not metrics["skipped"]
    intervals = score_intervals(
        predictions[["EmoAct", "EmoVal", "EmoDom"]].to_numpy(),
        rows[list(LABEL_COLUMNS)].to_numpy(),
        groups=speaker_groups(rows["SpkrID"]),
        resamples=200,
    )
    assert intervals["by"] == "speaker" and intervals["units"] == 10  # IEMOCAP's 2 speakers x 5 sessions
    assert set(intervals["ccc"]) == {"arousal", "valence", "dominance", "mean"}
    scale = table_scale(rows)
    on_corpus = scale.from_model(predictions[["EmoAct", "EmoVal", "EmoDom"]].to_numpy())
    assert scale.label == "1-5" and ((on_corpus >= 1) & (on_corpus <= 5)).all()


def test_prepare_converts_a_corpus_to_a_manifest_that_check_reads(tmp_path, capsys):
    from emosphere import cli_data, corpora
    from emosphere.cli import main

    write_iemocap(tmp_path / "IEMOCAP", per_dialogue=2)
    source, output = str(tmp_path / "IEMOCAP"), str(tmp_path / "fold5.csv")
    assert main(["prepare", "--format", "iemocap", "--corpus", source, "--fold", "5", "--output", output]) == 0
    assert "labels on the 1-5 scale" in capsys.readouterr().out
    assert set(pd.read_csv(output)["split"]) == {"Train", "Development", "Test"}
    assert main(["check", "--corpus", output, "--quiet"]) == 0
    assert "1-5" in capsys.readouterr().out
    assert main(["prepare", "--format", "iemocap", "--corpus", source]) == 2
    assert "--output" in capsys.readouterr().err
    assert main(["prepare", "--format", "iemocap", "--corpus", source, "--scale", "1", "5", "--output", output]) == 2
    assert "--scale: not an option of --format iemocap" in capsys.readouterr().err
    assert cli_data.FORMATS == corpora.FORMATS  # the CLI's copy, kept so that --help imports no pandas
