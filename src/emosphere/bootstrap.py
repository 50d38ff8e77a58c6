"""Bootstrap confidence intervals and paired comparisons of CCC and the region metrics.

A test set is a sample, and a CCC measured on it an estimate; systems that differ by 0.01-0.03
mean CCC can swap places on another sample. This module says how sure a figure and a difference are.

Resampling
    Replicate ``b`` draws ``units`` units with replacement: the ``b``-th call
    ``rng.integers(0, units, units)`` of ``rng = numpy.random.default_rng(seed)``. The units are the
    utterances, or with ``groups`` (one label per utterance, e.g. :func:`speaker_groups`) whole
    speakers: an utterance then counts as often as its speaker was drawn, which is the honest choice
    when a speaker's utterances are correlated. A statistic of a replicate is computed with these
    counts as weights, vectorised over replicates (in chunks, so memory stays bounded); it equals the
    statistic of the resampled rows (tests/test_bootstrap.py checks it against such a loop).

Intervals
    Percentile intervals: the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the
    replicates (numpy's linear interpolation); level 0.95 and 1,000 replicates by default.

Paired comparison
    Systems scored on the same files are resampled with the same replicates; the replicates of the
    difference in CCC (system - reference) give its interval and a two-sided p-value,
    ``p = min(1, 2 (min(#{d <= 0}, #{d >= 0}) + 1) / (B + 1))``: the level at which the percentile
    interval starts to exclude 0, with the usual +1 so that p is never 0 (at least 2 / (B + 1)). A
    system with several runs (seeds) is scored by the mean of its runs' CCC in each replicate; the
    interval then covers the test set's sampling, not training randomness (report the runs' spread
    beside it).

What the commands call
    ``evaluate``: ``score_intervals(predicted, true, region_pred=..., region_target=..., num_classes=K,
    groups=speaker_groups(rows["SpkrID"]) if --by speaker else None, resamples=, seed=)`` into
    ``metrics["intervals"]``; :func:`format_interval` in the summary line. ``compare``:
    :func:`align_predictions` of the systems' prediction tables, :func:`paired_comparison`,
    ``write_table`` of its table (CSV) and :func:`comparison_markdown`. ``ablate``: the same with one
    table per seed for each variant, the set's reference variant as ``reference``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .errors import UserError
from .metrics import ccc, confusion_scores
from .sphere import DIMENSIONS

DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95
DEFAULT_SEED = 0
CHUNK_CELLS = 1 << 21
"""Replicates are computed in chunks of at most this many (replicate, utterance) weights (16 MiB)."""
CCC_NAMES = (*DIMENSIONS, "mean")
REGION_NAMES = ("accuracy", "macro_f1", "uar")
PREDICTED_COLUMNS = ("EmoAct", "EmoVal", "EmoDom")
"""Predicted A/V/D in a prediction table (``predictions_full.csv``), in :data:`DIMENSIONS` order."""
TRUE_COLUMNS = ("true_EmoAct", "true_EmoVal", "true_EmoDom")
UNKNOWN_SPEAKERS = ("", "unknown", "nan", "none", "<na>")
COMPARISON_COLUMNS = (
    "system",
    "reference",
    "dimension",
    "ccc",
    "reference_ccc",
    "difference",
    "ci_low",
    "ci_high",
    "p_value",
    "runs",
    "reference_runs",
    "n",
    "units",
    "by",
    "resamples",
    "level",
    "seed",
)


class ComparisonError(UserError, ValueError):
    """Prediction tables that cannot be compared; the message names the tables and files."""


def speaker_groups(speakers: Sequence[Any] | pd.Series) -> np.ndarray:
    """Group codes for resampling by speaker: one per distinct speaker ID; an utterance whose
    speaker is missing or ``Unknown`` (MSP-Podcast marks some so) is a group of its own."""
    values = pd.Series(list(speakers), dtype="string").str.strip()
    unknown = (values.isna() | values.str.lower().isin(UNKNOWN_SPEAKERS)).to_numpy()
    codes = pd.factorize(values.where(~unknown))[0]
    codes[unknown] = codes.max(initial=-1) + 1 + np.arange(int(unknown.sum()))
    return codes


def resample_weights(
    n: int, resamples: int, seed: int, groups: Sequence[Any] | np.ndarray | None = None
) -> Iterator[np.ndarray]:
    """Chunks of (r, n) weights: how often each utterance is in each replicate (module docstring)."""
    codes = np.arange(n) if groups is None else pd.factorize(np.asarray(groups))[0]
    if len(codes) != n or (codes < 0).any():
        raise ValueError(f"groups: need one label per utterance ({n}), none missing")
    units = int(codes.max(initial=-1)) + 1
    rng = np.random.default_rng(seed)
    rows = max(1, min(resamples, CHUNK_CELLS // max(n, units, 1)))
    for start in range(0, resamples, rows):
        r = min(rows, resamples - start)
        drawn = rng.integers(0, units, size=(r, units)) + units * np.arange(r)[:, None]
        counts = np.bincount(drawn.ravel(), minlength=r * units).reshape(r, units)
        yield counts[:, codes].astype(np.float64)


def ccc_replicates(weights: np.ndarray, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(r, d) CCC of (n, d) predictions and targets in each of the (r, n) weighted replicates (population
    moments, as :func:`emosphere.metrics.ccc`; 0 for a replicate without variance)."""
    pred_mean, target_mean = pred.mean(0), target.mean(0)
    p, y = pred - pred_mean, target - target_mean  # centred: the moments below lose no digits
    moments = weights @ np.concatenate([p, y, p * p, y * y, p * y], axis=1) / weights.sum(1, keepdims=True)
    mp, my, mpp, myy, mpy = np.split(moments, 5, axis=1)
    covariance = mpy - mp * my
    denominator = (mpp - mp * mp) + (myy - my * my) + (mp - my + pred_mean - target_mean) ** 2
    floor = 1e-12 * (p.var(0) + y.var(0) + (pred_mean - target_mean) ** 2)  # a replicate of one value
    ok = denominator > floor
    return np.where(ok, 2 * covariance / np.where(ok, denominator, 1.0), 0.0)


class _Regions:
    """Region metrics of weighted replicates: a confusion matrix per replicate from the utterances'
    (target, predicted) pairs, summed by pair."""

    def __init__(self, pred: np.ndarray, target: np.ndarray, num_classes: int) -> None:
        pair = np.asarray(target, dtype=np.int64) * num_classes + np.asarray(pred, dtype=np.int64)
        self.order = np.argsort(pair, kind="stable")
        self.codes, self.starts = np.unique(pair[self.order], return_index=True)
        self.num_classes = num_classes

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        summed = np.add.reduceat(weights[:, self.order], self.starts, axis=1)
        confusion = np.zeros((len(weights), self.num_classes**2))
        confusion[:, self.codes] = summed
        scores = confusion_scores(confusion.reshape(-1, self.num_classes, self.num_classes))
        return np.column_stack([scores[name] for name in REGION_NAMES])


def _interval(replicates: np.ndarray, level: float) -> np.ndarray:
    """(2, k) percentile interval of (B, k) replicates."""
    return np.percentile(replicates, [50 * (1 - level), 50 * (1 + level)], axis=0)


def _with_mean(values: np.ndarray) -> np.ndarray:
    return np.column_stack([values, values.mean(1)])


def score_intervals(
    pred: np.ndarray,
    target: np.ndarray,
    *,
    region_pred: np.ndarray | None = None,
    region_target: np.ndarray | None = None,
    num_classes: int | None = None,
    groups: Sequence[Any] | np.ndarray | None = None,
    by: str = "speaker",
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """Bootstrap intervals of CCC per dimension and mean of (n, 3) predictions and targets (on one
    scale; CCC does not depend on which), and of region accuracy, macro-F1 and UAR when
    ``region_pred``, ``region_target`` and ``num_classes`` are given. Resamples utterances, or the
    ``groups`` (``by`` names them in the result). Returns ``{"method", "level", "resamples", "seed",
    "by", "units", "ccc": {name: [low, high]}, "region": {name: [low, high]}}`` for metrics.json."""
    pred, target = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    given = [region_pred is not None, region_target is not None, num_classes is not None]
    if any(given) and not all(given):
        raise ValueError("region intervals need region_pred, region_target and num_classes together")
    regions = _Regions(region_pred, region_target, num_classes) if all(given) else None
    found: dict[str, list[np.ndarray]] = {"ccc": [], "region": []}
    for weights in resample_weights(len(pred), resamples, seed, groups):
        found["ccc"].append(_with_mean(ccc_replicates(weights, pred, target)))
        if regions is not None:
            found["region"].append(regions(weights))
    result: dict[str, Any] = {
        "method": "percentile bootstrap",
        "level": level,
        "resamples": resamples,
        "seed": seed,
        "by": "utterance" if groups is None else by,
        "units": len(pred) if groups is None else int(len(pd.unique(np.asarray(groups)))),
    }
    for part, names in (("ccc", CCC_NAMES), ("region", REGION_NAMES)):
        if found[part]:
            low, high = _interval(np.concatenate(found[part]), level)
            result[part] = {name: [float(a), float(b)] for name, a, b in zip(names, low, high)}
    return result


def format_interval(value: float, interval: Sequence[float], digits: int = 3) -> str:
    """``0.512 [0.487, 0.538]``."""
    return f"{value:.{digits}f} [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


def p_value(differences: np.ndarray) -> np.ndarray:
    """Two-sided bootstrap p-value of each column of (B, k) replicates of a difference (module docstring)."""
    below, above = (differences <= 0).sum(0), (differences >= 0).sum(0)
    return np.minimum(1.0, 2 * (np.minimum(below, above) + 1) / (len(differences) + 1))


def _runs(value: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    array = np.asarray(value, dtype=np.float64)
    return list(array) if array.ndim == 3 else [array]


def paired_comparison(
    target: np.ndarray,
    systems: Mapping[str, np.ndarray | Sequence[np.ndarray]],
    *,
    reference: str | None = None,
    groups: Sequence[Any] | np.ndarray | None = None,
    by: str = "speaker",
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = DEFAULT_SEED,
) -> pd.DataFrame:
    """The paired bootstrap of each system against ``reference`` (default: the first): per dimension
    and the mean, both CCC, their difference, its interval and p-value (:data:`COMPARISON_COLUMNS`).
    ``systems`` maps a name to (n, 3) predictions or a sequence of them (runs, e.g. seeds), all
    against the same (n, 3) ``target``."""
    target = np.asarray(target, dtype=np.float64)
    runs = {name: _runs(value) for name, value in systems.items()}
    reference = reference or next(iter(runs))
    if reference not in runs or len(runs) < 2:
        raise ValueError(f"need a reference among two or more systems; got {list(runs)}, reference {reference!r}")
    estimate = {name: _with_mean(np.array([ccc(p, target) for p in arrays])).mean(0) for name, arrays in runs.items()}
    replicates: dict[str, list[np.ndarray]] = {name: [] for name in runs}
    for weights in resample_weights(len(target), resamples, seed, groups):
        for name, arrays in runs.items():
            replicates[name].append(_with_mean(np.mean([ccc_replicates(weights, p, target) for p in arrays], axis=0)))
    base = np.concatenate(replicates[reference])
    units = len(target) if groups is None else int(len(pd.unique(np.asarray(groups))))
    common = (len(target), units, "utterance" if groups is None else by, resamples, level, seed)
    rows = []
    for name in (n for n in runs if n != reference):
        differences = np.concatenate(replicates[name]) - base
        (low, high), p = _interval(differences, level), p_value(differences)
        for k, dimension in enumerate(CCC_NAMES):
            a, b = estimate[name][k], estimate[reference][k]
            scores = (a, b, a - b, low[k], high[k], p[k], len(runs[name]), len(runs[reference]))
            rows.append((name, reference, dimension, *scores, *common))
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))


def comparison_markdown(table: pd.DataFrame, digits: int = 3) -> str:
    """A markdown table of :func:`paired_comparison`'s rows, with a note on how to read it."""
    first = table.iloc[0]
    lines = [
        "| system | reference | dimension | CCC | reference CCC | Δ CCC | "
        f"{first['level']:.0%} interval of Δ | p | resolved |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table.itertuples(index=False):
        resolved = "yes" if row.ci_low > 0 or row.ci_high < 0 else "no"
        lines.append(
            f"| {row.system} | {row.reference} | {row.dimension} | {row.ccc:.{digits}f} | "
            f"{row.reference_ccc:.{digits}f} | {row.difference:+.{digits}f} | "
            f"[{row.ci_low:+.{digits}f}, {row.ci_high:+.{digits}f}] | {row.p_value:.3f} | {resolved} |"
        )
    several = (table["runs"] > 1).any() or (table["reference_runs"] > 1).any()
    lines += [
        "",
        f"Paired percentile bootstrap over {first['n']} files: {first['resamples']} replicates resampling the "
        f"{first['units']} {first['by']}s, seed {first['seed']}. Δ = system - reference; p is two-sided. "
        f"A difference whose {first['level']:.0%} interval contains 0 is not resolved by this test set."
        + (
            " A system with several runs (seeds) is scored by their mean CCC; the interval covers the "
            "test set's sampling, not training randomness."
            if several
            else ""
        ),
    ]
    return "\n".join(lines) + "\n"


@dataclass
class Aligned:
    """Prediction tables of several systems on the same files, in one order."""

    files: list[str]
    target: np.ndarray
    """(n, 3) true A/V/D."""
    systems: dict[str, list[np.ndarray]]
    """Each system's runs, (n, 3) predicted A/V/D each."""
    groups: np.ndarray | None
    """:func:`speaker_groups` of the files when speakers were given."""


def _named(files: Sequence[str], limit: int = 5) -> str:
    files = sorted(map(str, files))
    return ", ".join(files[:limit]) + (f" and {len(files) - limit} more" if len(files) > limit else "")


def align_predictions(
    tables: Mapping[str, pd.DataFrame | Sequence[pd.DataFrame]],
    *,
    key: str = "FileName",
    predicted: Sequence[str] = PREDICTED_COLUMNS,
    true: Sequence[str] = TRUE_COLUMNS,
    speakers: Mapping[str, Any] | pd.Series | None = None,
) -> Aligned:
    """Line up the prediction tables of systems (a table, or one per run) by ``key``. Raises
    :class:`ComparisonError` naming the tables and files when a table lacks columns or repeats a
    file, when the tables do not list the same files, or when their true labels differ."""
    flat = [
        (f"{name} run {i + 1}" if not isinstance(value, pd.DataFrame) else name, name, table)
        for name, value in tables.items()
        for i, table in enumerate([value] if isinstance(value, pd.DataFrame) else value)
    ]
    for label, _, table in flat:
        missing = [c for c in (key, *predicted, *true) if c not in table]
        if missing:
            raise ComparisonError(
                f"{label}: no columns {missing}; a prediction table has {key}, predicted and true A/V/D"
            )
        repeated = table[key][table[key].duplicated()]
        if len(repeated):
            raise ComparisonError(f"{label}: files listed twice: {_named(repeated)}")
    first_label, _, first = flat[0]
    files = first[key].astype(str).tolist()
    target = first[list(true)].to_numpy(np.float64)
    systems: dict[str, list[np.ndarray]] = {}
    for label, name, table in flat:
        table = table.set_index(table[key].astype(str))
        lacks, extra = set(files) - set(table.index), set(table.index) - set(files)
        if lacks or extra:
            raise ComparisonError(
                f"{label} and {first_label} are not predictions of the same files: {label} lacks {len(lacks)} "
                f"({_named(lacks)}) and has {len(extra)} that {first_label} lacks ({_named(extra)})"
            )
        table = table.loc[files]
        differ = ~np.isclose(table[list(true)].to_numpy(np.float64), target, rtol=1e-6, atol=1e-6).all(1)
        if differ.any():
            raise ComparisonError(
                f"{label} and {first_label} have different true labels for {int(differ.sum())} file(s) "
                f"({_named(np.asarray(files)[differ])}): not the same corpus version or scale"
            )
        systems.setdefault(name, []).append(table[list(predicted)].to_numpy(np.float64))
    groups = None
    if speakers is not None:
        groups = speaker_groups([pd.Series(speakers).get(f) for f in files])
    return Aligned(files, target, systems, groups)
