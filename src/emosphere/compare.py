"""Comparing systems on the same files: each system's predictions on a split, and the paired
bootstrap of their CCC differences (:func:`emosphere.bootstrap.paired_comparison`).

``emosphere compare A B [C ...]`` and the ablation table (:mod:`emosphere.ablate`) both go through
:func:`compare_systems`: the systems' prediction tables are lined up by file (a file one system
has and another lacks is refused, by name), resampled together, and each system is compared with
the first (the reference). A system with several runs (seeds) is scored by their mean CCC.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from .bootstrap import align_predictions, comparison_markdown, paired_comparison
from .engine import Options
from .errors import UserError
from .evaluate import Intervals, evaluate_model, evaluate_run
from .io import read_table
from .labels import Corpus
from .rundir import RunDir


def system_predictions(
    system: str | os.PathLike,
    split: str,
    *,
    corpus: Corpus | None = None,
    batch_size: int = 16,
    device: str = "cpu",
) -> pd.DataFrame:
    """The prediction table (``predictions_full.csv``) of a system on ``split``: a run directory's (or
    its model directory's) from :func:`evaluate_run`, another model directory's evaluated now, or a
    prediction table as it is."""
    path = Path(system)
    for run in (RunDir(path), RunDir(path.parent)):  # a run directory, or a run's model/
        if RunDir.holds_run(run.path) and path.resolve() in (run.path.resolve(), run.model_dir.resolve()):
            return evaluate_run(run, split, corpus=corpus, batch_size=batch_size, device=device)[1]
    if path.is_dir():
        options = Options(batch_size=batch_size)
        return evaluate_model(path, split, corpus=corpus, options=options, device=device, intervals=None)[1]
    if path.is_file():
        return read_table(path)
    raise UserError(f"{system}: no such run directory, model directory or prediction table")


def compare_systems(
    tables: Mapping[str, pd.DataFrame | Sequence[pd.DataFrame]], intervals: Intervals = Intervals()
) -> tuple[pd.DataFrame, str]:
    """The paired comparison of each system with the first (:data:`emosphere.bootstrap.COMPARISON_COLUMNS`)
    and its markdown. ``tables`` maps a system's name to its prediction table, or one per run."""
    if intervals.resamples < 1:
        raise UserError("a comparison needs bootstrap replicates (--resamples >= 1)")
    first = next(iter(tables.values()))
    first = first if isinstance(first, pd.DataFrame) else first[0]
    speakers = None
    if intervals.by == "speaker":
        if "SpkrID" not in first:
            raise UserError("--by speaker: the prediction tables have no SpkrID column (evaluate writes it)")
        speakers = dict(zip(first["FileName"].astype(str), first["SpkrID"]))
    aligned = align_predictions(tables, speakers=speakers)
    table = paired_comparison(
        aligned.target, aligned.systems, groups=aligned.groups, by=intervals.by, resamples=intervals.resamples,
        seed=intervals.seed,
    )  # fmt: skip
    return table, comparison_markdown(table)
