"""The report of a training run: pictures first, then the numbers.

:func:`write_report` reads a run directory (:mod:`emosphere.rundir`; the split
is evaluated first when the run has no ``eval_<split>/``) and writes PNGs and
one self-contained ``report.html`` (images embedded as data URIs, no network
resources) to an output folder. The figures (:mod:`emosphere.plots`):

* ``curves.png``: training and development losses per step, development CCC per
  dimension per epoch (best epoch marked), the auxiliary weight per epoch;
* ``scatter.png``: predicted against true values per dimension (hexbin, CCC in the title);
* ``bias.png``: mean error (predicted - true) in bins of the true value: the pull
  towards the middle of the scale shows as positive error at the low end and
  negative at the high end;
* ``confusion.png``: the region confusion matrix (rows: true region, normalised);
* ``sphere.png``: labels and predictions on an azimuth-polar map of the sphere
  (phi, theta of the centred point, colour = intensity r) with the octant boundaries;
* ``projections.png``: labels and predictions on the A-V, A-D and V-D planes (the
  octant boundaries are the midlines at 4);
* ``groups.png``: CCC per gender and per speaker, when the label table has
  ``Gender`` and ``SpkrID``.

Every value is on the 1-7 scale; CCC is computed over the whole split (or group).
"""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .evaluate import evaluate_run
from .io import write_text_atomic
from .labels import Corpus
from .plots import (
    MIN_SPEAKER_UTTERANCES,
    aux_weights,
    group_ccc,
    plot_bias,
    plot_confusion,
    plot_curves,
    plot_groups,
    plot_projections,
    plot_scatter,
    plot_sphere,
)
from .rundir import RunDir, epoch_metrics
from .sphere import DIMENSIONS


@dataclass
class Figure:
    file: str
    title: str
    caption: str


# --- the page ----------------------------------------------------------------------------------


def _table(frame: pd.DataFrame, digits: int = 3) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.{digits}f}", border=0, classes="numbers")


REGION_LABELS = {"accuracy": "accuracy", "macro_f1": "macro-F1", "uar": "UAR"}


def _interval(bounds: list[float]) -> str:
    return f"[{bounds[0]:.3f}, {bounds[1]:.3f}]"


def _page(
    title: str,
    facts: dict[str, Any],
    metrics: dict[str, Any],
    figures: list[Figure],
    output: Path,
    extra_tables: list[tuple[str, str]],
) -> str:
    region, bounds = metrics["region"], metrics.get("intervals", {})
    ccc_rows = [{k: metrics["ccc"][k] for k in (*DIMENSIONS, "mean")}]
    region_rows = [{"region set": region["region_set"], "source": region["source"],
                    **{label: region[key] for key, label in REGION_LABELS.items()}}]  # fmt: skip
    if bounds:  # the 95 % intervals under the values
        ccc_rows.append({k: _interval(v) for k, v in bounds["ccc"].items()})
        intervals = {label: _interval(bounds["region"][key]) for key, label in REGION_LABELS.items()}
        region_rows.append({"region set": "95 % interval", "source": "", **intervals})
    parts = [f"<h1>{html.escape(title)}</h1>", "<table class='facts'>"]
    parts += [f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts.items()]
    resampled = f" (second row: 95 % bootstrap interval over {bounds['units']} {bounds['by']}s)" if bounds else ""
    parts += [
        "</table>",
        f"<h2>{html.escape(metrics['split'])} (n={metrics['n']})</h2>",
        f"<p>CCC over the whole split{resampled}:</p>",
        _table(pd.DataFrame(ccc_rows)),
        _table(pd.DataFrame(region_rows)),
    ]
    if metrics.get("skipped"):
        parts.append(
            f"<p>{len(metrics['skipped'])} file(s) could not be predicted and are left out "
            "(listed in metrics.json).</p>"
        )
    for figure in figures:
        data = base64.b64encode((output / figure.file).read_bytes()).decode("ascii")
        parts += [
            f"<h2>{html.escape(figure.title)}</h2>",
            f"<p>{html.escape(figure.caption)}</p>",
            f"<img alt='{html.escape(figure.title)}' src='data:image/png;base64,{data}'>",
            f"<p class='file'>{html.escape(figure.file)}</p>",
        ]
    for heading, body in extra_tables:
        parts += [f"<h2>{html.escape(heading)}</h2>", body]
    style = (
        "body{font-family:sans-serif;max-width:1400px;margin:2em auto;color:#222}img{max-width:100%}"
        "table{border-collapse:collapse;margin:0.5em 0}td,th{padding:2px 10px;text-align:right}"
        "table.facts th{text-align:left}.file{color:#888;font-size:80%}"
    )
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )


CAPTIONS = {
    "curves.png": ("Training curves", "Losses per logged step (train) and per epoch (dev); development CCC per "
                   "dimension per epoch; the weight of the auxiliary region loss in each epoch."),
    "scatter.png": ("Predicted against true", "One hexbin per dimension; dashed: perfect prediction."),
    "bias.png": ("Error by true value",
                 "Mean of predicted - true in 0.5-wide bins of the true value, with its standard error."),
    "confusion.png": ("Region confusion matrix", "Rows: true region (from the labels); columns: predicted region; "
                      "colour: share of the row; numbers: utterances."),
    "sphere.png": ("Labels and predictions on the sphere",
                   "Azimuth-polar map of the centred point (a, v, d) = 2 (x - 1) / 6 - 1; black lines: octant "
                   "boundaries (A = 4 at phi = +-90, D = 4 at phi = 0 and +-180, V = 4 at theta = 90); grey grid: "
                   "the run's sphereN region set; colour: intensity r."),
    "projections.png": ("Labels and predictions on the planes",
                        "Grey: labels; red: predictions; lines at the scale midpoint 4 (the octant boundaries)."),
    "groups.png": ("CCC per gender and per speaker", "CCC within each group on the 1-7 scale."),
}  # fmt: skip


def write_report(
    run_dir: str | os.PathLike,
    output: str | os.PathLike,
    *,
    split: str | None = None,
    corpus: Corpus | None = None,
    batch_size: int = 16,
    device: str = "cpu",
) -> Path:
    """Write the PNGs and ``report.html`` of ``run_dir`` for ``split`` (default: the run's development
    split) to ``output``, evaluating the split first if need be (from ``corpus`` when the run's
    corpus has moved); returns the HTML's path."""
    run, output = RunDir.open(run_dir), Path(output)
    config = run.config()
    split = split or config.data.dev_split
    metrics, predictions = evaluate_run(run, split, corpus=corpus, batch_size=batch_size, device=device)
    log = run.metric_log()
    epochs = epoch_metrics(log)
    output.mkdir(parents=True, exist_ok=True)
    drawn = (
        ["curves.png"] if plot_curves(log, epochs, aux_weights(epochs, config.objective), output / "curves.png") else []
    )
    plot_scatter(predictions, metrics, output / "scatter.png")
    plot_bias(predictions, output / "bias.png")
    plot_confusion(predictions, metrics, config.model.region_set(), output / "confusion.png")
    plot_sphere(predictions, metrics["region"]["region_set"], output / "sphere.png")
    plot_projections(predictions, output / "projections.png")
    drawn += ["scatter.png", "bias.png", "confusion.png", "sphere.png", "projections.png"]
    tables = _groups(predictions, run.speaker_table(predictions["FileName"], corpus), output / "groups.png")
    drawn += ["groups.png"] if tables else []
    figures = [Figure(name, *CAPTIONS[name]) for name in drawn]
    dev = epochs["dev/ccc_mean"] if "dev/ccc_mean" in epochs else pd.Series(dtype=float)
    facts = {
        "run": run.path.resolve(),
        "encoder": config.model.encoder.name,
        "pooling": config.model.pooling,
        "regions": config.model.regions,
        "auxiliary weight": config.objective.aux_schedule,
        "epochs logged": len(epochs),
        "best epoch (dev mean CCC)": dev.idxmax() if dev.notna().any() else "-",
    }
    page = _page(f"emosphere report: {run.path.name}", facts, metrics, figures, output, tables)
    write_text_atomic(output / "report.html", page)
    return output / "report.html"


def _groups(predictions: pd.DataFrame, labels: pd.DataFrame | None, path: Path) -> list[tuple[str, str]]:
    """CCC per gender and per speaker (with ``MIN_SPEAKER_UTTERANCES``), when the label table has
    ``Gender`` and ``SpkrID``: their figure at ``path`` and their HTML tables (heading, table)."""
    groups = [c for c in ("Gender", "SpkrID") if labels is not None and c in labels]
    path.unlink(missing_ok=True)
    if not groups:
        return []
    own = predictions.drop(columns=[c for c in groups if c in predictions])  # evaluate keeps SpkrID
    joined = own.merge(labels[["FileName", *groups]], on="FileName", how="left")
    genders = group_ccc(joined, "Gender") if "Gender" in groups else None
    known = joined[joined["SpkrID"].astype(str) != "Unknown"] if "SpkrID" in groups else joined
    speakers = group_ccc(known, "SpkrID", MIN_SPEAKER_UTTERANCES) if "SpkrID" in groups else None
    tables = []
    if genders is not None and not genders.empty:
        tables.append(("CCC per gender", _table(genders)))
    if speakers is not None and not speakers.empty:
        heading = f"CCC per speaker (>= {MIN_SPEAKER_UTTERANCES} utterances), lowest mean first"
        tables.append((heading, _table(speakers.sort_values("mean"))))
    if tables:
        plot_groups(genders, speakers, path)
    return tables
