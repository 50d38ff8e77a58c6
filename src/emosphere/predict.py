"""``emosphere predict``: the audio a user names, through the one inference path, into a table.

Inputs are files, folders, manifests and globs (:mod:`emosphere.inputs`);
each is predicted by :func:`emosphere.inference.predict_sources` (windows,
batches, aggregation: the rule is in that module's docstring) and written to
one table, CSV, JSON lines or parquet, whose columns are described in
docs/predict.md. The table is rewritten atomically as the run goes, so an
interrupted run leaves a complete table that ``resume`` continues; files
that fail are listed in ``<output stem>.errors.csv``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .inference import TABLE_KEYS, Backend, Failure, Prediction, TorchBackend, predict_sources, rows
from .inputs import InputError, collect_inputs
from .io import TABLE_SUFFIXES, read_table, write_table

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx")


def load_backend(model: str | os.PathLike, backend: str = "torch", device: str = "cpu",
                 precision: str = "fp32") -> Backend:
    """A model directory or hub id (``torch``, on ``device`` at ``precision``), or an exported
    ``.onnx`` file (``onnx``, on the CPU; it needs neither torch nor the model code)."""
    if backend == "onnx":
        from .runtime import OnnxModel

        if device != "cpu" or precision != "fp32":
            log.warning("--device and --precision are ignored by the onnx backend (CPU, as exported)")
        return OnnxModel.load(model)
    if backend != "torch":
        raise InputError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    from .model import EmoSphereSER

    return TorchBackend(EmoSphereSER.from_pretrained(model, device=device), device, precision)


def errors_path(output: str | os.PathLike) -> Path:
    """``<output stem>.errors.csv`` beside ``output``."""
    output = Path(output)
    return output.with_name(f"{output.stem}.errors.csv")


def predict_to_file(backend: Backend, inputs: Sequence[str | os.PathLike], output: str | os.PathLike, *,
                    resume: bool = False, save_every: float = 60.0, **options: Any) -> list[tuple[str, str]]:
    """Predict the audio named by ``inputs`` (see :func:`emosphere.inputs.collect_inputs`) into the
    table ``output`` (CSV, .jsonl or .parquet; ``options`` as :func:`emosphere.inference.predict_sources`),
    rewritten atomically every ``save_every`` seconds and at the end, also when interrupted.
    ``resume`` keeps the files already in ``output`` and predicts the others. Failures are logged
    and written to :func:`errors_path` (removed when there are none); returns them as (file, error)."""
    output = Path(output)
    if output.suffix.lower() not in TABLE_SUFFIXES:
        raise InputError(f"{output}: unknown output format; use one of {', '.join(TABLE_SUFFIXES)}")
    paths = collect_inputs(inputs)
    if not paths:
        raise InputError(f"no audio files found in {', '.join(map(str, inputs))}")
    done = None
    if resume and output.exists():
        done = read_table(output)
        if not set(TABLE_KEYS) <= set(done.columns):
            raise InputError(f"{output}: not a prediction table, cannot resume from it")
        finished = set(done.loc[done["level"] == "file", "file"].astype(str))
        log.info("resume: %d of %d files already in %s", len(finished & set(paths)), len(paths), output)
        paths = [p for p in paths if p not in finished]
    results = predict_sources(backend, paths, **options)
    tables: list[pd.DataFrame] = [] if done is None else [done]
    failures: list[Failure] = []

    def save() -> None:
        write_table(pd.concat(tables, ignore_index=True) if tables else rows([], backend.region_names), output)

    saved = time.monotonic()
    try:
        for result in results:
            if isinstance(result, Prediction):
                tables.append(result.table(backend.region_names))
            else:
                log.warning("skipped %s: %s", result.name, result.error)
                failures.append(result)
            if time.monotonic() - saved > save_every:
                save()
                saved = time.monotonic()
    finally:
        save()
        failed = [(f.name, f.error) for f in failures]
        if failed:
            write_table(pd.DataFrame(failed, columns=["file", "error"]), errors_path(output))
        else:
            errors_path(output).unlink(missing_ok=True)
    return failed
