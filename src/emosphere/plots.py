"""The figures of a run's report, drawn with matplotlib's object API (no pyplot, so the caller's
backend is left alone). Each ``plot_*`` writes one PNG (atomically) from a prediction table with
the labels (``predictions_full.csv``: the value columns and ``true_<label>``); every value is
drawn on the model's 1-7 scale, and CCC is computed over the whole split (or group). :mod:`emosphere.report` puts
them on a page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import ObjectiveConfig
from .evaluate import prediction_arrays
from .io import atomic_path
from .losses import aux_weight
from .metrics import ccc, confusion_matrix
from .sphere import DIMENSIONS, SCALE_MAX, SCALE_MIN, RegionSet, centre, to_spherical

COLOURS = {"arousal": "#d62728", "valence": "#2ca02c", "dominance": "#1f77b4", "mean": "#333333"}
MIN_SPEAKER_UTTERANCES = 10
"""Speakers with fewer utterances in the split get no CCC of their own (nor does MSP-Podcast's
``SpkrID`` "Unknown", which pools many speakers)."""


def _figure(rows: int, cols: int, width: float = 4.2, height: float = 3.6):
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(cols * width, rows * height), layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False)


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


# --- the plots ---------------------------------------------------------------------------------


def aux_weights(epochs: pd.DataFrame, objective: ObjectiveConfig) -> pd.Series:
    """The auxiliary weight of each epoch: as logged, else (an epoch too short to log a step) from the schedule."""
    schedule = pd.Series({e: aux_weight(e, objective) for e in epochs.index}, dtype=float)
    logged = epochs["train/aux_weight"] if "train/aux_weight" in epochs else pd.Series(dtype=float)
    return logged.combine_first(schedule)


def plot_curves(log: pd.DataFrame, epochs: pd.DataFrame, weights: pd.Series, path: Path) -> bool:
    """Losses per step, development CCC per epoch, auxiliary weight per epoch; False without logs."""
    if log.empty or epochs.empty:
        return False
    fig, axes = _figure(1, 3, width=4.8)
    ax = axes[0, 0]
    for column, label, style in [
        ("train/loss", "train total", "-"),
        ("train/ccc_loss_step", "train CCC loss", "-"),
        ("train/aux_loss", "train aux loss", "-"),
    ]:
        if column in log:
            rows = log.dropna(subset=[column])
            ax.plot(rows["step"], rows[column], style, lw=1, alpha=0.8, label=label)
    for column, label in [("dev/ccc_loss", "dev CCC loss"), ("dev/aux_loss", "dev aux loss")]:
        if column in log:
            rows = log.dropna(subset=[column])
            ax.plot(rows["step"], rows[column], "o--", ms=4, label=label)
    for boundary in log.groupby("epoch")["step"].max().iloc[:-1]:
        ax.axvline(boundary, color="0.85", lw=0.8, zorder=0)
    ax.set(xlabel="step (grey lines: epoch ends)", ylabel="loss", title="losses")
    ax.legend(fontsize=7)

    ax = axes[0, 1]
    for name in (*DIMENSIONS, "mean"):
        column = f"dev/ccc_{name}"
        if column in epochs:
            values = epochs[column].dropna()
            ax.plot(values.index, values, "o-", color=COLOURS[name], lw=2 if name == "mean" else 1, label=name)
    if "dev/ccc_mean" in epochs and epochs["dev/ccc_mean"].notna().any():
        best = int(epochs["dev/ccc_mean"].idxmax())
        ax.axvline(best, color="0.6", ls=":", label=f"best epoch {best}")
    ax.set(xlabel="epoch", ylabel="CCC (1-7 scale)", title="development CCC")
    ax.legend(fontsize=7)

    ax = axes[0, 2]
    ax.bar(weights.index, weights, color="#9467bd")
    for epoch, weight in weights.items():
        ax.text(epoch, weight, f"{weight:.3g}", ha="center", va="bottom", fontsize=7)
    ax.set(xlabel="epoch", ylabel="weight w(e)", title="auxiliary loss weight", ylim=(0, 1.15))
    for a in axes.flat:
        a.xaxis.get_major_locator().set_params(integer=True)
    _save(fig, path)
    return True


def plot_scatter(predictions: pd.DataFrame, metrics: dict[str, Any], path: Path) -> None:
    predicted, true = prediction_arrays(predictions)
    fig, axes = _figure(1, 3)
    for i, name in enumerate(DIMENSIONS):
        ax = axes[0, i]
        hexes = ax.hexbin(true[:, i], predicted[:, i], gridsize=24, extent=(1, 7, 1, 7), mincnt=1, cmap="viridis")
        ax.plot([1, 7], [1, 7], color="0.5", lw=1, ls="--")
        ax.set(
            xlim=(1, 7),
            ylim=(1, 7),
            aspect="equal",
            xlabel=f"true {name}",
            ylabel=f"predicted {name}",
            title=f"{name}: CCC {metrics['ccc'][name]:.3f}",
        )
        fig.colorbar(hexes, ax=ax, shrink=0.8, label="utterances").ax.yaxis.get_major_locator().set_params(integer=True)
    _save(fig, path)


def error_by_bin(predicted: np.ndarray, true: np.ndarray, width: float = 0.5) -> pd.DataFrame:
    """Per dimension and bin of the true value: count, mean error (predicted - true) and its standard error."""
    edges = np.arange(SCALE_MIN, SCALE_MAX + width, width)
    rows = []
    for i, name in enumerate(DIMENSIONS):
        bins = np.clip(np.digitize(true[:, i], edges) - 1, 0, len(edges) - 2)
        error = predicted[:, i] - true[:, i]
        for b in np.unique(bins):
            e = error[bins == b]
            rows.append(
                {
                    "dimension": name,
                    "centre": edges[b] + width / 2,
                    "n": len(e),
                    "mean_error": e.mean(),
                    "se": e.std(ddof=1) / np.sqrt(len(e)) if len(e) > 1 else np.nan,
                }
            )
    return pd.DataFrame(rows)


def plot_bias(predictions: pd.DataFrame, path: Path) -> None:
    table = error_by_bin(*prediction_arrays(predictions))
    fig, axes = _figure(1, 1, width=6.5, height=3.8)
    ax = axes[0, 0]
    for offset, name in zip((-0.08, 0.0, 0.08), DIMENSIONS):
        rows = table[table["dimension"] == name]
        ax.errorbar(
            rows["centre"] + offset,
            rows["mean_error"],
            yerr=rows["se"].fillna(0),
            fmt="o-",
            color=COLOURS[name],
            ms=4,
            capsize=2,
            label=name,
        )
    ax.axhline(0, color="0.4", lw=1)
    ax.axvline(4, color="0.8", lw=1, ls=":")
    ax.set(
        xlabel="true value (bins of 0.5; 4 = scale midpoint)",
        ylabel="mean error, predicted - true",
        title="error by true value (positive at the low end, negative at the high end = pull to the middle)",
        xlim=(1, 7),
    )
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    _save(fig, path)


def region_predictions(predictions: pd.DataFrame, regions: RegionSet) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(true, predicted) region indices in ``regions`` (the run's, its origin radius included) and
    the class names: the classifier's regions when the table has them, else the regions of the
    predicted values."""
    names = regions.class_names
    predicted, true = prediction_arrays(predictions)
    truth = regions.assign(true)
    column = next((c for c in ("region_classifier", "region") if c in predictions), None)  # "region": <= 0.1
    if column is not None:
        guess = pd.Categorical(predictions[column].astype(str), categories=names).codes.astype(np.int64)
    else:
        guess = regions.assign(predicted)
    return truth, guess, names


def plot_confusion(predictions: pd.DataFrame, metrics: dict[str, Any], regions: RegionSet, path: Path) -> None:
    region = metrics["region"]
    truth, guess, names = region_predictions(predictions, regions)
    used = np.union1d(np.unique(truth), np.unique(guess))  # large grids: only the classes that occur
    counts = confusion_matrix(guess, truth, len(names))[np.ix_(used, used)]
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    size = min(max(4.5, 0.42 * len(used) + 2), 14)
    fig, axes = _figure(1, 1, width=size, height=size * 0.85)
    ax = axes[0, 0]
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    labels = [names[c] for c in used]
    ax.set_xticks(range(len(used)), labels, rotation=90 if len(used) > 10 else 0, fontsize=7)
    ax.set_yticks(range(len(used)), labels, fontsize=7)
    if len(used) <= 20:
        for (r, c), n in np.ndenumerate(counts):
            if n:
                ax.text(
                    c, r, str(n), ha="center", va="center", fontsize=7, color="white" if rates[r, c] > 0.5 else "black"
                )
    source = "region head" if region["source"] == "classifier" else "regions of the predicted values"
    ax.set(
        xlabel=f"predicted ({source})",
        ylabel="true",
        title=f"{region['region_set']}: accuracy {region['accuracy']:.3f}, macro-F1 {region['macro_f1']:.3f}, "
        f"UAR {region['uar']:.3f}",
    )
    ax.title.set_fontsize(9)
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the true region's utterances")
    _save(fig, path)


def _octant_cells() -> list[tuple[float, float, str]]:
    """(phi, theta) in degrees at the centre of each octant's cell on the azimuth-polar map, and its name."""
    octants = RegionSet("octant")
    cells = []
    for phi in (-135.0, -45.0, 45.0, 135.0):
        for theta in (45.0, 135.0):
            a, v, d = (
                np.sin(np.radians(theta)) * np.cos(np.radians(phi)),
                np.cos(np.radians(theta)),
                np.sin(np.radians(theta)) * np.sin(np.radians(phi)),
            )
            point = 4 + 3 * np.array([a, v, d])  # back to the 1-7 scale
            cells.append((phi, theta, octants.class_names[int(octants.assign(point))]))
    return cells


def plot_sphere(predictions: pd.DataFrame, region_set: str, path: Path) -> None:
    predicted, true = prediction_arrays(predictions)
    fig, axes = _figure(1, 2, width=5.4, height=3.9)
    delta = RegionSet(region_set).delta
    for ax, values, title in ((axes[0, 0], true, "labels"), (axes[0, 1], predicted, "predictions")):
        r, theta, phi = to_spherical(centre(values)).T
        points = ax.scatter(np.degrees(phi), np.degrees(theta), c=r, s=6, cmap="plasma", vmin=0, vmax=np.sqrt(3))
        if delta and delta != 90:
            for line in np.arange(-180, 181, delta):
                ax.axvline(line, color="0.85", lw=0.6, zorder=0)
            for line in np.arange(0, 181, delta):
                ax.axhline(line, color="0.85", lw=0.6, zorder=0)
        for line in (-90, 0, 90):
            ax.axvline(line, color="0.3", lw=1)
        ax.axhline(90, color="0.3", lw=1)
        for cell_phi, cell_theta, name in _octant_cells():
            ax.text(
                cell_phi,
                cell_theta,
                name,
                ha="center",
                va="center",
                fontsize=13,
                color="0.55",
                alpha=0.6,
                fontweight="bold",
            )
        ax.set(
            xlim=(-180, 180),
            ylim=(180, 0),
            xticks=range(-180, 181, 90),
            yticks=range(0, 181, 45),
            xlabel="azimuth phi = atan2(D, A) (degrees)",
            ylabel="polar theta = arccos(V / r) (degrees)",
            title=f"{title} (V+ at the top; A+ for |phi| < 90, D+ for phi > 0)",
        )
        ax.title.set_fontsize(9)
    fig.colorbar(points, ax=axes[0, :].tolist(), shrink=0.8, label="intensity r (centred)")
    _save(fig, path)


def plot_projections(predictions: pd.DataFrame, path: Path) -> None:
    predicted, true = prediction_arrays(predictions)
    fig, axes = _figure(1, 3, height=4.0)
    pairs = [(0, 1), (0, 2), (1, 2)]
    for ax, (x, y) in zip(axes[0], pairs):
        ax.scatter(true[:, x], true[:, y], s=5, color="0.65", alpha=0.6, label="labels")
        ax.scatter(predicted[:, x], predicted[:, y], s=5, color="#d62728", alpha=0.6, label="predictions")
        ax.axvline(4, color="0.3", lw=1)
        ax.axhline(4, color="0.3", lw=1)
        ax.set(
            xlim=(1, 7),
            ylim=(1, 7),
            aspect="equal",
            xlabel=DIMENSIONS[x],
            ylabel=DIMENSIONS[y],
            title=f"{DIMENSIONS[x]} - {DIMENSIONS[y]}",
        )
        ax.legend(fontsize=7, loc="lower right", markerscale=2)
    _save(fig, path)


def group_ccc(table: pd.DataFrame, column: str, min_n: int = 2) -> pd.DataFrame:
    """CCC per dimension and their mean for each value of ``column`` with at least ``min_n`` rows."""
    rows = []
    for value, group in table.groupby(column):
        if len(group) < min_n:
            continue
        predicted, true = prediction_arrays(group)
        values = ccc(predicted, true)
        rows.append({column: value, "n": len(group), **dict(zip(DIMENSIONS, values)), "mean": values.mean()})
    return pd.DataFrame(rows)


def plot_groups(genders: pd.DataFrame | None, speakers: pd.DataFrame | None, path: Path) -> None:
    panels = [p for p in (genders, speakers) if p is not None and not p.empty]
    fig, axes = _figure(1, len(panels), width=5.0, height=3.8)
    panel = iter(axes[0])
    if genders is not None and not genders.empty:
        ax = next(panel)
        names = [*DIMENSIONS, "mean"]
        width = 0.8 / len(genders)
        for k, (_, row) in enumerate(genders.iterrows()):
            ax.bar(
                np.arange(len(names)) + (k - (len(genders) - 1) / 2) * width,
                [row[n] for n in names],
                width,
                label=f"{row['Gender']} (n={row['n']})",
            )
        ax.set_xticks(range(len(names)), names)
        ax.set(ylabel="CCC", title="CCC per gender")
        ax.legend(fontsize=7)
    if speakers is not None and not speakers.empty:
        ax = next(panel)
        names = [*DIMENSIONS, "mean"]
        rng = np.random.default_rng(0)
        for i, name in enumerate(names):
            ax.scatter(
                i + rng.uniform(-0.15, 0.15, len(speakers)), speakers[name], s=12, color=COLOURS[name], alpha=0.7
            )
            ax.plot([i - 0.25, i + 0.25], [speakers[name].median()] * 2, color="black", lw=2)
        ax.set_xticks(range(len(names)), names)
        ax.set(
            ylabel="CCC",
            title=f"CCC per speaker ({len(speakers)} speakers with >= "
            f"{MIN_SPEAKER_UTTERANCES} utterances; bar = median)",
        )
        ax.title.set_fontsize(9)
    _save(fig, path)
