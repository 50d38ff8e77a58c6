"""``emosphere timeline``: emotion over time, for each recording a table and a picture, and one page for the run.

For each recording :func:`write_timelines` writes, into the output folder:

* ``<name>.csv``: the recording's rows, exactly as ``emosphere predict`` writes
  them with the same options (:meth:`emosphere.engine.Predictor.rows`): its own
  row, then with ``--segments vad`` one row per speech region (``level``
  "speech") followed by its windows, or with ``--segments fixed`` one row per
  window; ``start`` and ``end`` in seconds, arousal, valence and dominance on
  the 1-7 scale (and on [0, 1]), the region of the values (``region_point``)
  and the classifier's region and probabilities;
* ``<name>.png`` (:func:`draw`): arousal, valence and dominance over time
  (1-7), speech regions shaded, and under it a band of the region the values
  lie in over time.

and ``index.html``: one self-contained page (inline CSS, the pictures as data
URIs; nothing is loaded from elsewhere) listing the recordings, their speech
time and values, and the recordings that failed. Recordings are predicted one
after another through the predictor's :meth:`stream`, each file read in blocks
(:mod:`emosphere.segments`): an hour-long file runs in bounded memory; the
progress bar counts seconds of audio.
"""

from __future__ import annotations

import base64
import html
import itertools
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .engine import Failure, Predictor
from .inputs import InputError, Segment, Source, iter_inputs, source_name
from .io import atomic_path, write_table, write_text_atomic
from .predict import EXACT_COLUMNS
from .sphere import DIMENSIONS

log = logging.getLogger(__name__)

COLOURS = {"arousal": "#d9480f", "valence": "#2b8a3e", "dominance": "#1c6fd6"}
"""The dimensions' colours, as on the service's page."""
PAGE = "index.html"


@dataclass
class Summary:
    """What a run wrote: one entry per recording (its row of values), and the failures."""

    recordings: list[dict] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)


def output_names(sources: Sequence[Source]) -> list[str]:
    """A distinct file name stem for each source: the file's stem (a segment's with its bounds),
    with ``-2``, ``-3`` ... for repeats."""
    names, seen = [], {}
    for source in sources:
        stem = re.sub(r"[^\w.-]+", "_", Path(source_name(source)).stem) or "recording"
        if isinstance(source, Segment):
            stem += f"_{source.start:g}-{source.end:g}s"
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return names


def _region_colours(region_names: Sequence[str]) -> dict[str, str]:
    from matplotlib import colormaps

    palette = colormaps["tab10" if len(region_names) <= 10 else "tab20"]
    return {name: palette(i % palette.N) for i, name in enumerate(region_names)}


def _parts(table: pd.DataFrame) -> list[pd.DataFrame]:
    """The finest rows of each stretch predicted on its own: a speech region's windows (or the
    region's row), or, without speech regions, the recording's windows (or its own row)."""
    body = table.iloc[1:]
    if not len(body):
        return [table.iloc[:1]] if table["arousal"].notna().iloc[0] else []
    starts = np.flatnonzero(body["level"].to_numpy() == "speech")
    if not len(starts):
        return [body]
    bounds = [*starts, len(body)]
    return [body.iloc[a + 1 : b] if b - a > 1 else body.iloc[a : a + 1] for a, b in itertools.pairwise(bounds)]


def draw(table: pd.DataFrame, region_names: Sequence[str], title: str, path: str | os.PathLike) -> None:
    """The picture of one recording's rows (see the module docstring), written atomically as PNG.
    Each stretch is a line through its windows' centres (a single window: a flat line over its span)."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    duration = float(table["end"].iloc[0])
    minutes = duration > 600
    scale = 60.0 if minutes else 1.0
    fig = Figure(figsize=(12, 4.4), layout="constrained")
    values, band = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [5, 1]})
    for _, region in table[table["level"] == "speech"].iterrows():
        values.axvspan(region["start"] / scale, region["end"] / scale, color="#e9ecef", lw=0)
    colours = _region_colours(region_names)
    spans: dict[str, list[tuple[float, float]]] = {}
    for part in _parts(table):
        single = len(part) == 1
        times = part[["start", "end"]].to_numpy().ravel() if single else (part["start"] + part["end"]).to_numpy() / 2
        for name in DIMENSIONS:
            ys = np.repeat(part[name].to_numpy(), 2) if single else part[name].to_numpy()
            values.plot(times / scale, ys, color=COLOURS[name], lw=1.6, marker=None if single else ".", ms=4)
        if "region_point" in part:
            edges = np.r_[part["start"].iloc[0], (part["end"].to_numpy()[:-1] + part["start"].to_numpy()[1:]) / 2,
                          part["end"].iloc[-1]]  # fmt: skip
            for k, region in enumerate(part["region_point"]):
                spans.setdefault(region, []).append((edges[k] / scale, (edges[k + 1] - edges[k]) / scale))
    for region, bars in spans.items():
        band.broken_barh(bars, (0, 1), color=colours.get(region, "#999999"), label=region)
    values.axhline(4, color="#98a2b3", lw=0.8, ls="--")
    values.set(ylim=(1, 7), ylabel="1-7 scale", title=title, xlim=(0, duration / scale))
    handles = [Line2D([], [], color=COLOURS[d], lw=2, label=d) for d in DIMENSIONS]
    handles.append(Patch(color="#e9ecef", label="speech"))
    values.legend(handles=handles, loc="upper right", ncols=4, fontsize=8, frameon=False)
    band.set(yticks=[], xlabel="minutes" if minutes else "seconds", ylabel="region")
    if spans:
        band.legend(loc="upper center", bbox_to_anchor=(0.5, -0.9), ncols=min(len(spans), 10), fontsize=8,
                    frameon=False)  # fmt: skip
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def _cell(value: object, digits: int = 2) -> str:
    if isinstance(value, float):
        return "" if np.isnan(value) else f"{value:.{digits}f}"
    return html.escape(str(value))


def page(summary: Summary, folder: Path, title: str) -> str:
    """The run's page: one section per recording with its values and picture (inlined), then the failures."""
    sections = []
    for entry in summary.recordings:
        picture = base64.b64encode((folder / f"{entry['name']}.png").read_bytes()).decode()
        facts = [f"{_cell(entry['end'] - entry['start'], 1)} s"]
        if "speech_seconds" in entry:
            facts.append(f"speech {_cell(entry['speech_seconds'], 1)} s ({html.escape(entry['status'])})")
        facts += [f"{d} {_cell(entry[d])}" for d in DIMENSIONS if entry[d] == entry[d]]
        for key, what in (("region_point", "region of the values"), ("region_classifier", "classifier's region")):
            if isinstance(entry.get(key), str):
                facts.append(f"{what} {html.escape(entry[key])}")
        sections.append(
            f"<section><h2>{html.escape(entry['file'])}</h2><p>{' &middot; '.join(facts)} &middot; "
            f'<a href="{html.escape(entry["name"])}.csv">{html.escape(entry["name"])}.csv</a></p>'
            f'<img alt="arousal, valence and dominance over time" src="data:image/png;base64,{picture}"></section>'
        )
    failed = "".join(f"<li>{html.escape(name)}: {html.escape(error)}</li>" for name, error in summary.failures)
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>'
        "body{font:15px/1.45 system-ui,sans-serif;margin:24px;color:#1d2330}section{margin:0 0 28px}"
        "h2{font-size:16px;margin:0 0 4px;word-break:break-all}p{margin:0 0 8px;color:#555}img{max-width:100%}"
        f"</style></head><body><h1>{html.escape(title)}</h1><p>Arousal, valence and dominance on the 1-7 scale of "
        "MSP-Podcast (4: neutral); shaded: speech found by the voice activity detector; the band: the region of "
        f"the emotion sphere in which the values lie (region_point).</p>{''.join(sections)}"
        + (f"<h2>Not predicted</h2><ul>{failed}</ul>" if failed else "")
        + "</body></html>\n"
    )


def write_timelines(
    predictor: Predictor, inputs: Sequence[str | os.PathLike], output: str | os.PathLike, *, progress: bool = False
) -> Summary:
    """Predict the recordings named by ``inputs`` (see :func:`emosphere.inputs.iter_inputs`) and write
    their timelines into the folder ``output`` (see the module docstring). Usage errors raise
    :class:`InputError` before any work; a recording that fails is listed and the run goes on."""
    sources = list(iter_inputs(inputs))
    if not sources:
        raise InputError(f"no audio files found in {', '.join(map(str, inputs))}")
    folder = Path(output)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    names, summary = output_names(sources), Summary()
    for result in predictor.stream(enumerate(sources), total=len(sources), progress=progress):
        if isinstance(result, Failure):
            log.warning("skipped %s: %s", result.name, result.error)
            summary.failures.append((result.name, result.error))
            continue
        name = names[result.index]
        table = predictor.rows([result])
        write_table(table, folder / f"{name}.csv", exact=EXACT_COLUMNS)
        draw(table, predictor.regions.class_names, Path(result.name).name, folder / f"{name}.png")
        summary.recordings.append({"name": name, **table.iloc[0].to_dict()})
    write_text_atomic(folder / PAGE, page(summary, folder, f"emosphere timeline: {len(sources)} recording(s)"))
    return summary
