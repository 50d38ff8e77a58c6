"""The output schema: every column emosphere writes, its scale, and the service's JSON shape.

Defined once here; the prediction tables (``emosphere predict``, the Python
API, evaluation's ``predictions_full.csv``), the service's JSON and its OpenAPI
description all derive from it. A source's values, on named columns:

* :data:`KEY_COLUMNS` ``file``, ``level`` (``file``, ``segment`` or
  ``window``), ``start`` and ``end`` (seconds from the beginning of the file);
* ``arousal``, ``valence``, ``dominance``: the 1-7 scale of MSP-Podcast, clipped;
* ``arousal_unit``, ``valence_unit``, ``dominance_unit``: the same on [0, 1];
* ``r``, ``theta``, ``phi``: the centred point 2 (x - 1) / 6 - 1 in spherical
  coordinates (r >= 0; theta in [0, pi] and phi in (-pi, pi], radians);
* ``silent``: true when no 25 ms frame of the span reaches
  :data:`emosphere.audio.SILENCE_DBFS` (-60 dBFS): the values then describe
  no speech;
* ``region_point``: the region (of the model's region set) in which the
  predicted point (arousal, valence, dominance) lies, from the regression head;
* ``region_classifier`` (the auxiliary classifier's most probable region) and
  ``p_<region>`` (its probabilities), for a model with a region head. The two
  regions come from different heads and may differ: the classifier was
  trained beside the regression, not from it.

:func:`describe` makes these columns from (n, 3) predictions on [0, 1];
:func:`rows` lays out the rows of predictions (a source's row, then its
windows'); :func:`json_values` turns one row into the service's JSON object.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .audio import SAMPLE_RATE, SILENCE_DBFS
from .sphere import DIMENSIONS, MODEL_SCALE, RegionSet, Scale, centre, from_unit, to_spherical, to_unit

if TYPE_CHECKING:
    from .engine import Prediction

KEY_COLUMNS = ("file", "level", "start", "end")
TEXT_COLUMNS = ("file", "level", "region_point", "region_classifier", "status")
"""The columns that hold text; ``silent`` is true or false, every other column is a number."""
SPAN_FIELDS: dict[str, str] = {
    "start": "start of the span, seconds from the beginning of the file",
    "end": "end of the span, seconds (for a whole file: its duration)",
}
VALUE_FIELDS: dict[str, str] = {
    **{d: f"{d} on the 1-7 scale of MSP-Podcast, clipped" for d in DIMENSIONS},
    **{f"{d}_unit": f"{d} on [0, 1] = ({d} - 1) / 6" for d in DIMENSIONS},
    "r": "intensity: distance of the centred point 2 (x - 1) / 6 - 1 from the centre, >= 0",
    "theta": "polar angle from the positive valence axis, radians in [0, pi]",
    "phi": "azimuth atan2(dominance, arousal) of the centred point, radians in (-pi, pi]",
}
"""The numeric value columns and what each means, its scale stated."""
SILENT_FIELD = (
    f"true when no 25 ms frame of the span reaches {SILENCE_DBFS:g} dBFS (RMS): no speech, the values describe silence"
)
REGION_FIELDS: dict[str, str] = {
    "region_point": "the region of the emotion sphere in which the predicted arousal, valence and dominance lie "
    "(the regression head)",
    "region_classifier": "the most probable region according to the auxiliary region classifier, a head of its "
    "own that may disagree with region_point (null without a region head)",
    "region_probabilities": "the region classifier's probability of each region, by name (null without a region head)",
}


def columns(region_names: Sequence[str]) -> list[str]:
    """Every column of a prediction table, in order, for a model with these regions (none: no region head)."""
    classifier = ["region_classifier", *(f"p_{name}" for name in region_names)] if len(region_names) else []
    return [*KEY_COLUMNS, *VALUE_FIELDS, "silent", "region_point", *classifier]


def describe(
    avd_unit: np.ndarray,
    region_probs: np.ndarray | None,
    region_names: Sequence[str],
    regions: RegionSet,
    silent: np.ndarray | None = None,
    scale: Scale = MODEL_SCALE,
) -> pd.DataFrame:
    """The value columns (see the module docstring) for (n, 3) predictions on [0, 1], (n, K) region
    probabilities (or None) over ``region_names``, in the model's region set ``regions``, and the
    spans' (n,) silence flags (None: not measured, all false); ``arousal``, ``valence`` and
    ``dominance`` on ``scale`` (an evaluation reports them on its corpus's scale)."""
    scaled = from_unit(avd_unit)
    table = pd.DataFrame(scale.from_model(scaled), columns=list(DIMENSIONS))
    table[[f"{d}_unit" for d in DIMENSIONS]] = to_unit(scaled)
    table[["r", "theta", "phi"]] = to_spherical(centre(scaled))
    table["silent"] = np.zeros(len(table), bool) if silent is None else np.asarray(silent, bool)
    table["region_point"] = np.asarray(regions.class_names)[regions.assign(scaled)]
    if region_probs is not None:
        table["region_classifier"] = np.asarray(region_names)[region_probs.argmax(1)]
        table[[f"p_{name}" for name in region_names]] = region_probs
    return table


def rows(predictions: Iterable[Prediction], region_names: Sequence[str], regions: RegionSet) -> pd.DataFrame:
    """The rows of every prediction, in the order given (the columns and no rows when there are none),
    for a model with ``region_names`` (none: no region head) and the region set ``regions``.
    Each source gets its row, then, when it has several windows, one row per window (``level``
    "window"). A whole file's row has ``level`` "file" and spans 0 to its duration; a segment's
    has ``level`` "segment" and spans the segment as given. ``start`` and ``end`` are seconds from
    the beginning of the file, for window rows too."""
    files, levels, bounds, avd, probs, silent = [], [], [], [], [], []
    for p in predictions:
        windows = p.spans.astype(np.float64) / SAMPLE_RATE
        offset = 0.0 if p.segment is None else p.segment[0]
        source_avd, source_probs = p.aggregate()
        count = 1 + len(windows) if len(windows) > 1 else 1
        files += [p.name] * count
        levels += ["file" if p.segment is None else "segment"] + ["window"] * (count - 1)
        bounds += [[0.0, windows[:, 1].max()] if p.segment is None else list(p.segment)]
        avd.append(source_avd[None])
        probs.append(None if source_probs is None else source_probs[None])
        loud = np.full(len(windows), np.inf) if p.loudest is None else p.loudest
        silent.append(loud.max(initial=-np.inf) < SILENCE_DBFS)
        if count > 1:
            bounds += (windows + offset).tolist()
            avd.append(np.clip(p.avd, 0.0, 1.0))
            probs.append(p.probs)
            silent.extend(loud < SILENCE_DBFS)
    keys = pd.DataFrame({"file": files, "level": levels, **dict(zip(("start", "end"), np.reshape(bounds, (-1, 2)).T))})
    if not avd:
        avd, probs = [np.zeros((0, 3))], [np.zeros((0, len(region_names))) if len(region_names) else None]
    region_probs = None if probs[0] is None else np.concatenate(probs)
    described = describe(np.concatenate(avd), region_probs, region_names, regions, np.array(silent, bool))
    return pd.concat([keys, described], axis=1)


def json_values(row: dict[str, Any], region_names: Sequence[str]) -> dict[str, Any]:
    """One table row as the service's JSON object: :data:`SPAN_FIELDS`, :data:`VALUE_FIELDS`, ``silent``
    and :data:`REGION_FIELDS` (the probabilities as a mapping from region name)."""
    values: dict[str, Any] = {key: float(row[key]) for key in (*SPAN_FIELDS, *VALUE_FIELDS)}
    values["silent"] = bool(row["silent"])
    values["region_point"] = row["region_point"]
    has_classifier = "region_classifier" in row
    values["region_classifier"] = row["region_classifier"] if has_classifier else None
    values["region_probabilities"] = {n: float(row[f"p_{n}"]) for n in region_names} if has_classifier else None
    return values


# --- speech segments (``--segments vad``) ----------------------------------------------------------

SPEECH_FIELDS: dict[str, str] = {
    "status": '"ok", or "no speech" for a file (or segment) in which the VAD found none (its values are empty)',
    "speech_seconds": "seconds of speech the VAD found in the file or segment (on its row; empty on the others)",
}
"""The columns a table gets with voice activity detection; level "speech" rows are the speech regions."""


def speech_columns(region_names: Sequence[str]) -> list[str]:
    """:func:`columns` with :data:`SPEECH_FIELDS` after the keys: the columns of ``--segments vad`` tables."""
    names = columns(region_names)
    return [*names[: len(KEY_COLUMNS)], *SPEECH_FIELDS, *names[len(KEY_COLUMNS) :]]
