"""Converters from published corpus layouts to the generic manifest (:mod:`emosphere.manifest`).

``emosphere prepare --format FORMAT --corpus SOURCE --output MANIFEST`` calls
``conversion = convert(FORMAT, SOURCE, fold=..., keep_other=..., labels=..., audio_dir=..., scale=...)``,
logs ``summarise_problems(conversion.problems)`` (each with its file and line), calls
``conversion.raise_for_errors()``, then ``write_manifest(conversion.manifest, MANIFEST)`` and prints
``conversion.summary()``. Only label files are read (audio paths are resolved, not opened:
``emosphere check`` checks the audio of a manifest).

Formats (docs/corpora.md gives the layouts and sources):

``iemocap``
    IEMOCAP (``IEMOCAP_full_release``): ``Session{1..5}/dialog/EmoEvaluation/<dialogue>.txt``, one line
    per utterance, ``[start - end] <utterance> <category> [valence, activation, dominance]`` (tabs; 1-5);
    audio ``Session{N}/sentences/wav/<dialogue>/<utterance>.wav``. Rater lines (``C-...:``,
    ``A-...:``), the ``%`` header and blank lines are skipped; any other line is reported.
``msp-improv``
    MSP-IMPROV: ``Evalution.txt`` (sic; or ``Evaluation.txt``), one line per utterance,
    ``UTD-IMPROV-<name>.avi; <category>; A:<a>; V:<v>; D:<d>; N:<naturalness>;`` (1-5), followed by
    its raters' lines; audio ``MSP-IMPROV-<name>.wav`` anywhere under ``Audio/``. The speaker and
    session come from the name (``...-F01-...``: the woman of session 1).
``msp-podcast``
    MSP-Podcast and corpora released in its layout (BIIC-Podcast): ``Labels/labels_consensus.csv``
    and ``Audios/`` (:func:`emosphere.labels.scan_consensus`); drops EmoClass O and X unless
    ``keep_other`` and Test3 (no labels), as :func:`emosphere.labels.prepare_labels` does.

Splits: for the session corpora, ``fold=K`` is the leave-one-session-out split whose Test set is
session K, Development session K-1 (the last session for K = 1), Train the others; without a fold
every row is in Test (the whole corpus as a held-out set, for cross-corpus evaluation). Rows keep
their ``session``. Names (``name``) are the audio files' names; paths are absolute.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .labels import Corpus, scan_consensus, usable_rows
from .problems import LabelError, no_problems, problems_table, raise_first
from .sphere import DIMENSIONS, MODEL_SCALE, Scale

FORMATS = ("iemocap", "msp-improv", "msp-podcast")
FIVE_POINT = Scale(1.0, 5.0)
GENDERS = {"F": "Female", "M": "Male"}
IEMOCAP_SESSIONS = 5
IMPROV_SESSIONS = 6
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)"
IEMOCAP_LINE = re.compile(
    rf"^\[\s*(?P<start>{_NUMBER})\s*-\s*(?P<end>{_NUMBER})\s*\]\s+(?P<name>\S+)\s+(?P<emotion>\S+)"
    rf"\s+\[\s*(?P<valence>{_NUMBER})\s*,\s*(?P<arousal>{_NUMBER})\s*,\s*(?P<dominance>{_NUMBER})\s*\]\s*$"
)
IEMOCAP_NAME = re.compile(r"^Ses(?P<session>\d\d)[FM]_\S+_(?P<gender>[FM])\d+$")
IEMOCAP_SKIPPED = re.compile(r"^(%|[CA]-\w+:|\s*$)")
IMPROV_LINE = re.compile(
    rf"^(?:UTD|MSP)-IMPROV-(?P<name>[^\s.;]+)(?:\.\w+)?\s*;\s*(?P<emotion>[^;]*?)\s*;\s*A:\s*(?P<arousal>{_NUMBER})"
    rf"\s*;\s*V:\s*(?P<valence>{_NUMBER})\s*;\s*D:\s*(?P<dominance>{_NUMBER})\s*;\s*N:\s*(?P<naturalness>{_NUMBER})"
    r"\s*;?\s*$"
)
IMPROV_SPEAKER = re.compile(r"-(?P<gender>[FM])(?P<session>\d\d)-")
IMPROV_RATER = re.compile(rf"A:\s*{_NUMBER}.*V:\s*{_NUMBER}")


@dataclass
class Conversion:
    """What a converter made: the manifest (:data:`emosphere.manifest.MANIFEST_COLUMNS` and more)
    and every problem of the label files, with file and line."""

    format: str
    source: Path
    manifest: pd.DataFrame
    problems: pd.DataFrame
    scale: Scale

    def raise_for_errors(self) -> None:
        """:class:`LabelError` naming the file and lines of the first kind of error, if any."""
        raise_first(self.source, self.problems, "every problem is listed above")

    def summary(self) -> str:
        """Utterances and speakers per split, and the scale."""
        table = self.manifest.groupby("split").agg(utterances=("path", "size"), speakers=("speaker", "nunique"))
        errors = int((self.problems["severity"] == "error").sum())
        return (
            f"{self.format} at {self.source}: {len(self.manifest)} utterance(s), labels on the "
            f"{self.scale.label} scale; {errors} error(s), {len(self.problems) - errors} warning(s)\n"
            + table.to_string()
        )


def session_splits(sessions: np.ndarray, fold: int | None, count: int, corpus: str) -> np.ndarray:
    """Train / Development / Test of each row by its session (see the module docstring)."""
    if fold is None:
        return np.full(len(sessions), "Test", dtype=object)
    if not 1 <= fold <= count:
        raise LabelError(f"fold {fold}: {corpus} has sessions 1-{count}; the fold is the test session")
    dev = count if fold == 1 else fold - 1
    return np.where(sessions == fold, "Test", np.where(sessions == dev, "Development", "Train")).astype(object)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            yield number, line.rstrip("\r\n")


def _finish(
    fmt: str, source: Path, rows: list[dict], found: list[pd.DataFrame], fold: int | None, sessions: int
) -> Conversion:
    """The manifest of ``rows`` (each with ``_file`` and ``_line``, labels on 1-5), with repeated names
    reported."""
    columns = list(rows[0]) if rows else ["name", "path", *DIMENSIONS, "speaker", "session", "_file", "_line"]
    table = pd.DataFrame(rows, columns=columns)
    repeated = table["name"].duplicated(keep=False)
    for file, line, name in table.loc[repeated, ["_file", "_line", "name"]].itertuples(index=False):
        found.append(problems_table("error", "utterance listed twice", file, [line], [name]))
    if table.empty:
        found.append(problems_table("error", "no utterance lines found", source, [], [str(source)]))
    manifest = table.drop(columns=["_file", "_line"])
    splits = session_splits(manifest["session"].to_numpy(), fold, sessions, fmt)
    manifest.insert(manifest.columns.get_loc("dominance") + 1, "split", splits)
    manifest["scale_min"], manifest["scale_max"] = FIVE_POINT.low, FIVE_POINT.high
    return Conversion(fmt, source, manifest, pd.concat([no_problems(), *found], ignore_index=True), FIVE_POINT)


def _labels(match: re.Match, path: Path, number: int, found: list[pd.DataFrame]) -> dict[str, float] | None:
    """The A/V/D of a parsed line on 1-5, or None with an error for a value off the scale."""
    values = {d: float(match[d]) for d in DIMENSIONS}
    off = [f"{d} {v:g}" for d, v in values.items() if not FIVE_POINT.contains(v)]
    if off:
        found.append(problems_table("error", "label outside [1, 5]", path, [number], [", ".join(off)]))
        return None
    return values


def iemocap(root: str | os.PathLike, *, fold: int | None = None) -> Conversion:
    """IEMOCAP's EmoEvaluation files to a manifest (see the module docstring)."""
    root = Path(root)
    folders = sorted(p for p in root.glob("Session*") if re.fullmatch(r"Session\d+", p.name))
    if not folders:
        raise LabelError(f"{root}: no Session1 ... Session5 folders (the IEMOCAP_full_release layout)")
    found = [
        problems_table("warning", "session folder missing", root / f"Session{n}", [], [""])
        for n in range(1, 6)
        if not (root / f"Session{n}").is_dir()
    ]
    rows: list[dict] = []
    for folder in folders:
        session = int(folder.name[7:])
        evaluations = folder / "dialog" / "EmoEvaluation"
        if not evaluations.is_dir():
            found.append(problems_table("error", "no dialog/EmoEvaluation folder", evaluations, [], [""]))
        for path in sorted(evaluations.glob("*.txt")):
            if not path.name.startswith("."):  # macOS copies carry ._ resource files
                rows += _iemocap_file(path, session, folder / "sentences" / "wav", found)
    return _finish("iemocap", root, rows, found, fold, IEMOCAP_SESSIONS)


def _iemocap_file(path: Path, session: int, wav: Path, found: list[pd.DataFrame]) -> list[dict]:
    rows = []
    for number, line in _lines(path):
        match = IEMOCAP_LINE.match(line)
        if match is None:
            if line.startswith("["):
                found.append(problems_table("error", "malformed utterance line", path, [number], [line]))
            elif not IEMOCAP_SKIPPED.match(line):
                found.append(problems_table("warning", "unknown line (skipped)", path, [number], [line]))
            continue
        name, named = match["name"], IEMOCAP_NAME.match(match["name"])
        if named is None or int(named["session"]) != session or not name.startswith(path.stem + "_"):
            problem = f"utterance name not of the form Ses{session:02d}?_<dialogue>_<F|M><number> of {path.stem}"
            found.append(problems_table("error", problem, path, [number], [name]))
            continue
        labels = _labels(match, path, number, found)
        if labels is not None:
            rows.append(
                {
                    "name": f"{name}.wav",
                    "path": str((wav / path.stem / f"{name}.wav").absolute()),
                    **labels,
                    "speaker": f"Ses{session:02d}{named['gender']}",
                    "gender": GENDERS[named["gender"]],
                    "emotion": match["emotion"],
                    "session": session,
                    "dialogue": path.stem,
                    "start": float(match["start"]),
                    "end": float(match["end"]),
                    "_file": str(path),
                    "_line": number,
                }
            )
    return rows


def msp_improv(
    root: str | os.PathLike,
    *,
    fold: int | None = None,
    labels: str | os.PathLike | None = None,
    audio_dir: str | os.PathLike | None = None,
) -> Conversion:
    """MSP-IMPROV's evaluation file to a manifest (see the module docstring)."""
    root = Path(root)
    candidates = [Path(labels)] if labels else [root / "Evalution.txt", root / "Evaluation.txt"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise LabelError(f"{candidates[0]}: label file not found (MSP-IMPROV's Evalution.txt; or give --labels)")
    audio = Path(audio_dir) if audio_dir else root / "Audio"
    if not audio.is_dir():
        raise LabelError(f"{audio}: audio folder not found (MSP-IMPROV's Audio/; or give --audio-dir)")
    files = {}
    for folder, _, names in os.walk(audio):
        files.update({Path(n).stem: Path(folder, n).absolute() for n in names if n.lower().endswith(".wav")})
    found: list[pd.DataFrame] = []
    rows = []
    for number, line in _lines(path):
        match = IMPROV_LINE.match(line)
        if match is None:
            if re.match(r"\s*(UTD|MSP)-IMPROV-", line):
                found.append(problems_table("error", "malformed utterance line", path, [number], [line]))
            elif line.strip() and not IMPROV_RATER.search(line):
                found.append(problems_table("warning", "unknown line (skipped)", path, [number], [line]))
            continue
        stem, speaker = f"MSP-IMPROV-{match['name']}", IMPROV_SPEAKER.search(match["name"])
        if speaker is None or stem not in files:
            problem = "no speaker (-F01-) in the name" if speaker is None else f"no audio file {stem}.wav under {audio}"
            found.append(problems_table("error", problem, path, [number], [match["name"]]))
            continue
        values = _labels(match, path, number, found)
        if values is not None:
            rows.append(
                {
                    "name": f"{stem}.wav",
                    "path": str(files[stem]),
                    **values,
                    "speaker": f"{speaker['gender']}{speaker['session']}",
                    "gender": GENDERS[speaker["gender"]],
                    "emotion": match["emotion"],
                    "session": int(speaker["session"]),
                    "naturalness": float(match["naturalness"]),
                    "_file": str(path),
                    "_line": number,
                }
            )
    return _finish("msp-improv", root, rows, found, fold, IMPROV_SESSIONS)


def msp_podcast(
    root: str | os.PathLike,
    *,
    labels: str | os.PathLike | None = None,
    audio_dir: str | os.PathLike | None = None,
    keep_other: bool = False,
    scale: Scale | None = None,
) -> Conversion:
    """A corpus in the MSP-Podcast layout to a manifest: the rows :func:`emosphere.labels.prepare_labels`
    would use (O and X only with ``keep_other``), their labels as written, on ``scale`` (1-7)."""
    corpus = Corpus.at(Path(root).absolute(), labels, Path(audio_dir).absolute() if audio_dir else None, scale=scale)
    scale = scale or MODEL_SCALE
    table, problems = scan_consensus(corpus.labels, scale=scale)
    rows = usable_rows(table, keep_other=keep_other)
    manifest = pd.DataFrame(
        {
            "name": rows["FileName"],
            "path": [str(corpus.audio_dir / name) for name in rows["FileName"]],
            "arousal": rows["EmoAct"],
            "valence": rows["EmoVal"],
            "dominance": rows["EmoDom"],
            "split": rows["Split_Set"],
            "speaker": rows["SpkrID"],
            "gender": rows["Gender"],
            "emotion": rows["EmoClass"],
            "scale_min": scale.low,
            "scale_max": scale.high,
        }
    ).reset_index(drop=True)
    return Conversion("msp-podcast", corpus.labels, manifest, problems, scale)


def convert(
    format: str,
    source: str | os.PathLike,
    *,
    fold: int | None = None,
    keep_other: bool = False,
    labels: str | os.PathLike | None = None,
    audio_dir: str | os.PathLike | None = None,
    scale: Scale | None = None,
) -> Conversion:
    """Run the converter of ``format`` (one of :data:`FORMATS`) on the corpus at ``source``; an option
    the format has no use for is a :class:`LabelError` naming it."""
    given = {"fold": fold, "keep_other": keep_other or None, "labels": labels, "audio_dir": audio_dir, "scale": scale}
    takes = {
        "iemocap": ("fold",),
        "msp-improv": ("fold", "labels", "audio_dir"),
        "msp-podcast": ("keep_other", "labels", "audio_dir", "scale"),
    }
    if format not in takes:
        raise LabelError(f"unknown corpus format {format!r}; known: {', '.join(FORMATS)}")
    extra = [key for key, value in given.items() if value is not None and key not in takes[format]]
    if extra:
        options = ", ".join("--" + key.replace("_", "-") for key in extra)
        raise LabelError(f"{options}: not an option of --format {format} (it takes {', '.join(takes[format])})")
    options = {key: value for key, value in given.items() if key in takes[format] and value is not None}
    return {"iemocap": iemocap, "msp-improv": msp_improv, "msp-podcast": msp_podcast}[format](source, **options)
