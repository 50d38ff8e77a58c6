"""Ablations: train a set of variants of one recipe and compare them in one table.

An ablation set is a YAML file (``recipes/ablations/``)::

    base: ../msp_podcast/emosphere_ser.yaml   # the recipe every variant starts from (relative to this file)
    output_dir: runs/ablations/paper          # one run directory per variant and seed under it
    split: Test1                              # the split the table reports
    seeds: [7]
    overrides: []                             # for every variant
    variants:                                 # name -> overrides, in the command line's key=value syntax
      paper: []
      sphere45: [model.regions=sphere45]

Each variant differs from the base by its overrides only, so the file shows
exactly what each row of the table changes. :func:`run_set` trains the
variants one after another (``<output_dir>/<variant>_seed<N>``, a normal run
directory), resuming an interrupted run from its last checkpoint and skipping
finished ones, and evaluates each on ``split``. :func:`tabulate` reads the runs
into ``ablation.csv`` and ``ablation.md``: CCC per dimension and mean on the
split (mean ± sd over seeds), the best development CCC and its epoch, region
metrics (the variant's own region set, from its classifier or, without one,
from the predicted values), the octant accuracy of the predicted values
(comparable across every variant), the training time, and each variant's
paired bootstrap comparison with the first variant.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import ConfigError, RunConfig, load_config, read_yaml
from .evaluate import evaluate_run, prediction_arrays
from .io import write_table, write_text_atomic
from .metrics import region_metrics
from .rundir import RunDir, epoch_metrics
from .sphere import DIMENSIONS, RegionSet

log = logging.getLogger(__name__)

SET_KEYS = {"base", "output_dir", "split", "seeds", "overrides", "variants"}


@dataclass
class AblationSet:
    base: Path
    output_dir: Path
    split: str = "Test1"
    seeds: list[int] = field(default_factory=lambda: [7])
    overrides: list[str] = field(default_factory=list)
    variants: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Variant:
    name: str
    seed: int
    overrides: list[str]
    """The variant's own overrides (what the table says it changes)."""
    config: RunConfig

    @property
    def run(self) -> RunDir:
        return RunDir(self.config.output_dir)


def _strings(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and "=" in v for v in value):
        raise ConfigError(f"{where}: expected a list of key=value strings, got {value!r}")
    return value


def load_set(path: str | os.PathLike) -> AblationSet:
    """Read and check an ablation set file."""
    path = Path(path)
    values = read_yaml(path, "ablation set") or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping with keys {sorted(SET_KEYS)}")
    unknown = sorted(set(values) - SET_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; known: {sorted(SET_KEYS)}")
    for key in ("base", "output_dir", "variants"):
        if key not in values:
            raise ConfigError(f"{path}: missing key {key!r}")
    variants = values["variants"]
    if not isinstance(variants, dict) or not variants:
        raise ConfigError(f"{path}: variants must map names to lists of key=value overrides")
    seeds = values.get("seeds", [7])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ConfigError(f"{path}: seeds must be a list of integers, got {seeds!r}")
    return AblationSet(
        base=(path.parent / values["base"]).resolve(),
        output_dir=Path(values["output_dir"]),
        split=str(values.get("split", "Test1")),
        seeds=seeds,
        overrides=_strings(values.get("overrides"), f"{path}: overrides"),
        variants={str(k): _strings(v, f"{path}: variants.{k}") for k, v in variants.items()},
    )


def plan(
    aset: AblationSet, overrides: list[str] | None = None, only: list[str] | None = None, seeds: list[int] | None = None
) -> list[Variant]:
    """Every (variant, seed) to run (``seeds`` default: the set's), its config loaded and checked now
    (a typo fails before any training). ``overrides`` (e.g. ``data.corpus=...``) apply to every
    variant, after the set's."""
    names = list(aset.variants)
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise ConfigError(f"unknown variant(s) {unknown}; the set has {names}")
    planned = []
    for name in [n for n in names if not only or n in only]:
        for seed in seeds or aset.seeds:
            run_dir = aset.output_dir / f"{name}_seed{seed}"
            values = [
                *aset.overrides,
                *aset.variants[name],
                *(overrides or []),
                f"output_dir={run_dir}",
                f"trainer.seed={seed}",
            ]
            try:
                config = load_config(aset.base, values)
            except ConfigError as error:
                raise ConfigError(f"variant {name}: {error}") from None
            planned.append(Variant(name, seed, aset.variants[name], config))
    return planned


def check_data(variants: list[Variant]) -> None:
    """Raise :class:`ConfigError` naming the variant if its corpus or output folder cannot be used
    (:func:`emosphere.preflight.check_paths`), before anything trains."""
    from .preflight import check_paths

    for variant in variants:
        try:
            check_paths(variant.config)
        except ConfigError as error:
            raise ConfigError(f"variant {variant.name}: {error}") from None


def table_plan(aset: AblationSet, overrides: list[str] | None = None) -> list[Variant]:
    """What the table covers: every variant with the set's seeds, plus any other seed that has a run
    directory (extra seeds run with ``--seeds`` for some variants)."""
    found = {
        int(p.name.rsplit("_seed", 1)[1])
        for p in aset.output_dir.glob("*_seed*")
        if p.name.rsplit("_seed", 1)[1].isdigit()
    }
    variants = plan(aset, overrides, seeds=sorted(set(aset.seeds) | found))
    return [v for v in variants if v.seed in aset.seeds or v.run.path.is_dir()]


def state(variant: Variant) -> dict[str, Any]:
    """What the run's ablation state says (``{}`` when it has not finished or failed)."""
    path = variant.run.ablation_state
    return json.loads(path.read_text()) if path.is_file() else {}


def is_done(variant: Variant, split: str) -> bool:
    return state(variant).get("status") == "done" and variant.run.metrics_file(split).is_file()


def run_variant(variant: Variant, split: str, device: str | None = None) -> None:
    """Train (or resume, or only evaluate) one variant and record it as done; ``device`` evaluates
    (default: cuda when present, else cpu)."""
    import torch

    from .train import train

    run = variant.run
    trained = run.has_model
    resumed = not trained and run.last_checkpoint.is_file()
    start = time.monotonic()
    if not trained:
        log.info(
            "ablation %s (seed %d): %s training in %s",
            variant.name,
            variant.seed,
            "resuming" if resumed else "starting",
            run.path,
        )
        train(variant.config, resume=resumed)
    seconds = time.monotonic() - start
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    evaluate_run(run, split, batch_size=variant.config.data.batch_size, device=device)
    _record(variant, status="done", train_seconds=None if trained else round(seconds, 1), resumed=resumed)


def _record(variant: Variant, **values: Any) -> None:
    record = {"variant": variant.name, "seed": variant.seed, "overrides": variant.overrides, **values}
    write_text_atomic(variant.run.ablation_state, json.dumps(record, indent=2) + "\n")


def run_set(
    aset: AblationSet, variants: list[Variant], overrides: list[str] | None = None, device: str | None = None
) -> list[tuple[Variant, str]]:
    """Run every variant not done yet, one after another (``device``: see :func:`run_variant`); a
    failing variant is logged and the others still run. Rewrites the tables (:func:`table_plan`)
    after each variant. Returns the failures."""
    failed = []
    for variant in variants:
        if is_done(variant, aset.split):
            log.info("ablation %s (seed %d): done already, skipped", variant.name, variant.seed)
            continue
        try:
            run_variant(variant, aset.split, device)
        except Exception as error:  # noqa: BLE001 - one failing variant must not stop the set
            log.error("ablation %s (seed %d) failed: %s: %s", variant.name, variant.seed, type(error).__name__, error)
            failed.append((variant, f"{type(error).__name__}: {error}"))
            _record(variant, status="failed", error=failed[-1][1])
        tabulate(aset, overrides)
    return failed


def _octant_accuracy(predictions: pd.DataFrame) -> float:
    octants = RegionSet("octant")
    predicted, true = (octants.assign(values) for values in prediction_arrays(predictions))
    return region_metrics(predicted, true, octants.num_classes)["accuracy"]


def collect(aset: AblationSet, variants: list[Variant]) -> pd.DataFrame:
    """One row per (variant, seed); runs not finished have ``status`` "not run" or "failed" (and
    ``error``) and no figures."""
    rows = []
    for variant in variants:
        config = variant.config
        row: dict[str, Any] = {
            "variant": variant.name,
            "seed": variant.seed,
            "overrides": " ".join(variant.overrides) or "(base)",
            "regions": config.model.regions if config.objective.aux_schedule != "none" else "none",
            "aux_schedule": config.objective.aux_schedule,
            "pooling": config.model.pooling,
        }
        record = state(variant)
        if not is_done(variant, aset.split):
            status = "failed" if record.get("status") == "failed" else "not run"
            rows.append({**row, "status": status, "error": record.get("error", "")})
            continue
        metrics, predictions = evaluate_run(variant.run, aset.split)
        epochs = epoch_metrics(variant.run.metric_log())
        dev = epochs["dev/ccc_mean"].dropna() if "dev/ccc_mean" in epochs else pd.Series(dtype=float)
        row.update({f"ccc_{k}": metrics["ccc"][k] for k in (*DIMENSIONS, "mean")})
        row.update(
            {
                "dev_ccc_mean_best": dev.max() if len(dev) else np.nan,
                "best_epoch": int(dev.idxmax()) if len(dev) else -1,
                "epochs": len(dev),
            }
        )
        region = metrics["region"]
        row.update(
            {
                "region_set": region["region_set"],
                "region_source": region["source"],
                "region_accuracy": region["accuracy"],
                "region_macro_f1": region["macro_f1"],
                "region_uar": region["uar"],
                "octant_accuracy_from_values": _octant_accuracy(predictions),
                "train_minutes": record["train_seconds"] / 60 if record["train_seconds"] else np.nan,
                "resumed": record["resumed"],
                "n": metrics["n"],
                "status": "done",
            }
        )
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(values: pd.Series, digits: int = 3) -> str:
    values = values.dropna()
    if values.empty:
        return "-"
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def _markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _variant_cells(name: str, group: pd.DataFrame, reference: float) -> list[str]:
    """A variant's cells of :func:`markdown` (mean ± sd over its finished seeds)."""
    first, finished = group.iloc[0], group[group["status"] == "done"]
    what = [name, first["overrides"], first["regions"], first["aux_schedule"], first["pooling"]]
    if finished.empty:
        return [*what, "0", first["status"], *["-"] * 8]
    epochs = ", ".join(str(int(e)) for e in finished["best_epoch"])
    region = (
        f"{_cell(finished['region_accuracy'])} / {_cell(finished['region_macro_f1'])} "
        f"({first['region_set']}, {finished['region_source'].iloc[0]})"
    )
    minutes = _cell(finished["train_minutes"], 1) + ("*" if finished["resumed"].any() else "")
    return [
        *what, str(len(finished)), *(_cell(finished[f"ccc_{name}"]) for name in (*DIMENSIONS, "mean")),
        f"{finished['ccc_mean'].mean() - reference:+.3f}", f"{_cell(finished['dev_ccc_mean_best'])} ({epochs})",
        region, _cell(finished["octant_accuracy_from_values"]), minutes,
    ]  # fmt: skip


def markdown(table: pd.DataFrame, split: str) -> str:
    """Per variant (mean ± sd over seeds when there are several): what it changes, CCC on ``split``,
    the change of mean CCC from the first variant, region metrics and time."""
    head = [
        "variant", "changes", "regions", "aux weight", "pooling", "seeds",
        *(f"CCC {name}" + (f" ({split})" if name == DIMENSIONS[0] else "") for name in DIMENSIONS), "CCC mean",
        "Δ mean", "dev CCC mean (best epoch)", "region acc / macro-F1 (source)", "octant acc from values", "train min",
    ]  # fmt: skip
    done = table[table["status"] == "done"] if "status" in table else table.iloc[0:0]
    reference = done[done["variant"] == table["variant"].iloc[0]]["ccc_mean"].mean() if len(done) else np.nan
    lines = [_markdown_row(head), "|" + "---|" * len(head)]
    lines += [_markdown_row(_variant_cells(n, g, reference)) for n, g in table.groupby("variant", sort=False)]
    notes = [
        "",
        f"CCC over the whole {split} split; Δ mean: change of the mean CCC from the "
        "first row. Region metrics use each variant's own region set (sphereN grids have more classes, so "
        "their accuracy is not comparable with octants); without a region head they come from the "
        "predicted values. Octant accuracy from values: the octant of the predicted A/V/D point against "
        "the true one, comparable across variants.",
    ]
    if "resumed" in done and done["resumed"].any():
        notes.append("* resumed: the time covers the last segment of training only.")
    return "\n".join(lines + notes) + "\n"


def tabulate(aset: AblationSet, overrides: list[str] | None = None) -> tuple[Path, Path]:
    """Write ``ablation.csv`` (one row per variant and seed, :func:`collect`), ``ablation.md`` (per
    variant, :func:`markdown`, then each variant's paired bootstrap comparison with the set's first
    variant that has run, over all their seeds, :func:`emosphere.compare.compare_systems`) and ``comparison.csv``
    in the set's output folder; returns the first two."""
    from .compare import compare_systems

    variants = table_plan(aset, overrides)
    table = collect(aset, variants)
    text = markdown(table, aset.split)
    runs: dict[str, list[pd.DataFrame]] = {}
    for variant in variants:
        if is_done(variant, aset.split):
            runs.setdefault(variant.name, []).append(evaluate_run(variant.run, aset.split)[1])
    if len(runs) > 1:  # the reference: the set's first variant that has run
        comparison, compared = compare_systems(runs)
        reference = next(iter(runs))
        write_table(comparison, aset.output_dir / "comparison.csv")
        text += f"\n## Each variant against {reference}\n\n{compared}"
    csv_path, md_path = aset.output_dir / "ablation.csv", aset.output_dir / "ablation.md"
    write_table(table, csv_path)
    write_text_atomic(md_path, text)
    return csv_path, md_path
