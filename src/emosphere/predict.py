"""``emosphere predict``: the audio a user names, through the engine, into a table, in one process
or several (``torchrun``).

Inputs are files, folders, list files, manifest tables (with segments) and
globs, read as a lazy stream (:mod:`emosphere.inputs`); each source is
predicted by :meth:`emosphere.engine.Predictor.stream` (windows, batches,
aggregation: the rule is in that module's docstring) and written to one
table, CSV, JSON lines or parquet, whose columns are described in
docs/predict.md (and defined in :mod:`emosphere.schema`). Sources that fail
are listed in ``<output stem>.errors.csv``.

How a run writes (one process is rank 0 of 1; see :mod:`emosphere.ranks`):

* The input stream is read once to check it and count it, before any work.
  Its sources are numbered by position (duplicates dropped); those not
  already done are dealt out in turn, every ``world``-th to each process.
* Each process writes its results, as they come, to numbered chunk files in
  ``<output>.parts/`` (``run<id>.part-<rank>-of-<world>.<n>.csv``, with
  ``.errors.csv`` beside them for failures), each complete when it appears
  (written under a temporary name, then renamed), and when its share is
  done, a marker ``run<id>.part-<rank>-of-<world>.done``.
* When every process has marked its part done, rank 0 merges the chunks into
  the output, in input order (after the rows of the output being resumed, if
  any), writes the errors file and removes ``<output>.parts/``. A single
  process also merges when it is interrupted, so that the output then holds
  what was predicted.
* ``resume`` skips every source that has a row in the output or in a chunk
  of an earlier run (a whole file by its ``file``, a segment by its ``file``,
  ``start`` and ``end``), with any number of processes; sources that failed
  are tried again. Without ``resume``, an earlier output, its errors file and
  its chunks are removed first.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .engine import Failure, Prediction, Predictor
from .inputs import InputError, Source, SourceKey, iter_inputs, segment_key, source_key
from .io import atomic_path, check_table_path, iter_table, table_writer, write_table, write_text_atomic
from .ranks import Ranks
from .schema import KEY_COLUMNS, TEXT_COLUMNS

log = logging.getLogger(__name__)

CHUNK_SOURCES = 2000
"""A process writes a chunk at least every this many sources (and every ``save_every`` seconds)."""
INDEX = "input_index"
"""The column of a chunk that holds each row's source position in the input stream."""
SOURCE_LEVELS = ("file", "segment")
"""The levels of the rows that stand for a source (the rows after one, up to the next, are its parts)."""
EXACT_COLUMNS = ("start", "end")
"""Columns written at full precision (times in long recordings need more than 6 digits)."""
CHUNK = re.compile(r"run(?P<run>\d+)\.part-(?P<rank>\d+)-of-(?P<world>\d+)\.(?P<seq>\d+)\.(?P<kind>csv|errors\.csv)")


def errors_path(output: str | os.PathLike) -> Path:
    """``<output stem>.errors.csv`` beside ``output``."""
    output = Path(output)
    return output.with_name(f"{output.stem}.errors.csv")


def parts_path(output: str | os.PathLike) -> Path:
    """``<output>.parts/``, where the processes write their chunks until the output is merged."""
    output = Path(output)
    return output.with_name(f"{output.name}.parts")


def _part(output: Path, run: int, rank: int, world: int) -> str:
    """The start of the names of the files of one process's part of run ``run``."""
    return f"{parts_path(output)}/run{run}.part-{rank}-of-{world}"


@dataclass
class Summary:
    """What a run did, over all processes."""

    sources: int = 0
    """Sources predicted by this run (not counting those resumed)."""
    kept: int = 0
    """Sources already in the output (or its parts) when a resumed run started."""
    audio_seconds: float = 0.0
    seconds: float = 0.0
    """Wall time from the first source to the merged output."""
    failed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    """(file, error) of the failed sources, in input order (rank 0; another rank has its own)."""


# --- what is done, and what is this process's -----------------------------------------------------


def _row_keys(table: pd.DataFrame) -> Iterator[SourceKey]:
    """The source keys of a table's file and segment rows (see :func:`emosphere.inputs.source_key`)."""
    for file, level, start, end in table[list(KEY_COLUMNS)].itertuples(index=False):
        if level == "file":
            yield file
        elif level == "segment":
            yield segment_key(file, start, end)


def _chunks(parts: Path, kind: str = "csv") -> dict[tuple[int, int, int], list[Path]]:
    """The chunk files in ``parts`` (of rows, or of errors with ``kind`` "errors.csv") by (run, rank,
    world), each list in order."""
    found: dict[tuple[int, int, int], list[tuple[int, Path]]] = {}
    if parts.is_dir():
        for path in parts.iterdir():
            match = CHUNK.fullmatch(path.name)
            if match and match["kind"] == kind:
                key = (int(match["run"]), int(match["rank"]), int(match["world"]))
                found.setdefault(key, []).append((int(match["seq"]), path))
    return {key: [path for _, path in sorted(files)] for key, files in sorted(found.items())}


def _done(output: Path, columns: list[str]) -> set[SourceKey]:
    """The sources with rows in ``output`` and in the chunks beside it."""
    tables = [output] if output.exists() else []
    if tables:
        first = next(iter_table(output, rows=1), None)
        found = columns if first is None else list(first.columns)  # a JSON lines file without rows is empty
        if found != columns:
            raise InputError(
                f"{output}: cannot resume, its columns differ from this model's output "
                f"({', '.join(found)} against {', '.join(columns)})"
            )
    tables += [path for files in _chunks(parts_path(output)).values() for path in files]
    done: set[SourceKey] = set()
    for path in tables:
        for chunk in iter_table(path, columns=list(KEY_COLUMNS), text=KEY_COLUMNS[:2]):
            done.update(_row_keys(chunk))
    return done


def _deal(
    inputs: Sequence[str | os.PathLike], done: set[SourceKey], ranks: Ranks
) -> Iterator[tuple[int, Source, bool | None]]:
    """Every source of the input stream: (its position, the source, whether it is this process's;
    None when it is ``done``). Those not done are dealt out in turn, every ``world``-th to each
    process. The stream is read once to count and check it before any work and once to predict:
    both passes go through here, so they agree."""
    remaining = 0
    for index, source in enumerate(iter_inputs(inputs)):
        if source_key(source) in done:
            yield index, source, None
        else:
            yield index, source, ranks.mine(remaining)
            remaining += 1


# --- writing chunks, and merging them -------------------------------------------------------------


class _PartWriter:
    """This process's chunk files of one run."""

    def __init__(self, output: Path, run: int, ranks: Ranks, rows: Callable[[list], pd.DataFrame]) -> None:
        self.prefix = _part(output, run, ranks.rank, ranks.world)
        self.rows = rows
        self.predictions: list[Prediction] = []
        self.failures: list[Failure] = []
        self.written = 0

    def add(self, result: Prediction | Failure) -> None:
        (self.failures if isinstance(result, Failure) else self.predictions).append(result)

    def __len__(self) -> int:
        return len(self.predictions) + len(self.failures)

    def flush(self) -> None:
        if self.predictions:
            table = self.rows(self.predictions)
            source = np.cumsum(np.isin(table["level"].to_numpy(), SOURCE_LEVELS)) - 1
            table.insert(0, INDEX, np.array([p.index for p in self.predictions])[source])
            with atomic_path(f"{self.prefix}.{self.written:06d}.csv") as tmp:
                table.to_csv(tmp, index=False)  # full precision: the output is formatted once, at the merge
        if self.failures:
            failed = pd.DataFrame([(f.index, f.name, f.error) for f in self.failures], columns=[INDEX, "file", "error"])
            with atomic_path(f"{self.prefix}.{self.written:06d}.errors.csv") as tmp:
                failed.to_csv(tmp, index=False)
        if len(self):
            self.written += 1
        self.predictions, self.failures = [], []

    def finish(self) -> None:
        self.flush()
        write_text_atomic(f"{self.prefix}.done", f"{self.written} chunks\n")


def _sequence(files: list[Path], columns: list[str]) -> Iterator[tuple]:
    """The rows of one process's chunks, in order, as tuples (input position first)."""
    for path in files:
        for chunk in iter_table(path, text=TEXT_COLUMNS):
            yield from chunk[[INDEX, *columns]].itertuples(index=False, name=None)


def _not_in(rows: Iterable[tuple], kept: set[SourceKey], columns: list[str]) -> Iterator[tuple]:
    """The rows (as :func:`_sequence` gives them) of the sources not in ``kept``."""
    file, level, start, end = (1 + columns.index(c) for c in KEY_COLUMNS)
    keep = True
    for row in rows:
        if row[level] in SOURCE_LEVELS:
            keep = (row[file] if row[level] == "file" else segment_key(row[file], row[start], row[end])) not in kept
        if keep:
            yield row


def _merge(output: Path, run: int, columns: list[str], resume: bool) -> list[tuple[str, str]]:
    """Write ``output``: the rows of the output being resumed, then the rows of every chunk, in input
    order; write the errors of run ``run`` (or remove the errors file); remove the chunks. Returns
    the errors."""
    parts = parts_path(output)
    chunks = _chunks(parts)
    kept: set[SourceKey] = set()
    with table_writer(output, exact=EXACT_COLUMNS) as write:
        write(pd.DataFrame({c: pd.Series(dtype=object if c in TEXT_COLUMNS else float) for c in columns}))
        if resume and output.exists():
            for table in iter_table(output, text=TEXT_COLUMNS):
                kept.update(_row_keys(table))
                write(table)
        merged = heapq.merge(*(_sequence(files, columns) for files in chunks.values()), key=lambda row: row[0])
        merged = _not_in(merged, kept, columns)  # kept: the sources an interrupted merge had already written
        while batch := list(itertools.islice(merged, 10_000)):
            write(pd.DataFrame([row[1:] for row in batch], columns=columns))
    failed = [
        pd.read_csv(path, dtype={"file": str, "error": str}, keep_default_na=False)
        for (run_of, _, _), files in _chunks(parts, "errors.csv").items()
        if run_of == run
        for path in files
    ]
    errors = errors_path(output)
    failures: list[tuple[str, str]] = []
    if failed:
        table = pd.concat(failed).sort_values(INDEX, kind="stable")
        failures = list(table[["file", "error"]].itertuples(index=False, name=None))
        write_table(table[["file", "error"]], errors)
    else:
        errors.unlink(missing_ok=True)
    shutil.rmtree(parts, ignore_errors=True)
    return failures


def _start(
    predictor: Predictor, inputs: Sequence[str | os.PathLike], output: Path, resume: bool, ranks: Ranks
) -> tuple[int, set[SourceKey], int, int]:
    """Check and count the input stream, clear an earlier output (without ``resume``) and agree on a
    run id: (run id, the sources already done, how many of the inputs they are, this process's share).
    Usage errors raise :class:`InputError` here, before any work."""
    check_table_path(output)
    done = _done(output, predictor.columns) if resume else set()
    sources = finished = mine = 0
    for _, _, is_mine in _deal(inputs, done, ranks):
        sources, finished, mine = sources + 1, finished + (is_mine is None), mine + bool(is_mine)
    if not sources:
        raise InputError(f"no audio files found in {', '.join(map(str, inputs))}")
    if finished:
        log.info("resume: %d of %d sources already predicted in %s", finished, sources, output)
    if ranks.rank == 0 and not resume:
        for stale in (output, errors_path(output)):
            stale.unlink(missing_ok=True)
        shutil.rmtree(parts_path(output), ignore_errors=True)
    run = ranks.broadcast(time.time_ns() // 1000)  # after rank 0's clean-up
    ranks.barrier()  # every process has read what was done before any writes
    parts_path(output).mkdir(parents=True, exist_ok=True)
    return run, done, finished, mine


def predict_to_file(
    predictor: Predictor,
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    resume: bool = False,
    save_every: float = 60.0,
    ranks: Ranks | None = None,
    progress: bool = False,
) -> Summary:
    """Predict the audio named by ``inputs`` (see :func:`emosphere.inputs.iter_inputs`) with
    ``predictor`` into the table ``output`` (CSV, .jsonl or .parquet), this process's share of it
    when ``ranks`` (from :meth:`Ranks.from_env`, inside :meth:`Ranks.joined`) says there are
    several; see the module docstring for how the processes write and merge. Results are saved in
    chunks at least every ``save_every`` seconds. ``resume`` keeps the sources already predicted and
    predicts the others. Failures are logged and written to :func:`errors_path`. Usage errors (bad
    inputs, nothing to predict) raise :class:`InputError` before any work."""
    output, ranks = Path(output), ranks or Ranks()
    run, done, kept, mine = _start(predictor, inputs, output, resume, ranks)
    share = ((index, source) for index, source, is_mine in _deal(inputs, done, ranks) if is_mine)
    results = predictor.stream(share, total=mine, progress=progress and ranks.rank == 0)
    writer = _PartWriter(output, run, ranks, predictor.rows)
    started = time.monotonic()
    try:
        predicted, audio_seconds, failures = _write_share(results, writer, save_every)
    except BaseException:
        try:
            writer.flush()
        finally:  # the output holds what was predicted, whatever stopped the run
            if not ranks.distributed:
                _merge(output, run, predictor.columns, resume)
        if ranks.distributed:
            log.error("rank %d stopped; its finished chunks are kept in %s: run again with --resume",
                      ranks.rank, parts_path(output))  # fmt: skip
        raise
    ranks.barrier()
    if ranks.rank == 0:
        missing = [r for r in range(ranks.world) if not Path(f"{_part(output, run, r, ranks.world)}.done").exists()]
        if missing:
            raise RuntimeError(f"parts {missing} of {ranks.world} did not finish; run again with --resume")
        failures = _merge(output, run, predictor.columns, resume)
    failed = ranks.broadcast(len(failures))
    predicted, audio_seconds = ranks.sum([predicted, audio_seconds])
    return Summary(int(predicted), kept, audio_seconds, time.monotonic() - started, failed, failures)


def _write_share(
    results: Iterable[Prediction | Failure], writer: _PartWriter, save_every: float
) -> tuple[int, float, list[tuple[str, str]]]:
    """Write this process's results in chunks; (sources predicted, their audio seconds, failures)."""
    saved = time.monotonic()
    predicted, audio_seconds, failures = 0, 0.0, []
    for result in results:
        writer.add(result)
        if not isinstance(result, Failure):
            predicted, audio_seconds = predicted + 1, audio_seconds + result.seconds
        else:
            log.warning("skipped %s: %s", result.name, result.error)
            failures.append((result.name, result.error))
        if len(writer) >= CHUNK_SOURCES or time.monotonic() - saved > save_every:
            writer.flush()
            saved = time.monotonic()
    writer.finish()
    return predicted, audio_seconds, failures
