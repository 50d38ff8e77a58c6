"""From what a user names to a model that runs: a model directory, a hub id or an exported
``.onnx`` file becomes a :class:`~emosphere.backends.Backend`, and with :class:`~emosphere.engine.Options`
a :class:`~emosphere.engine.Predictor`. (Apart from :mod:`emosphere.backends` and
:mod:`emosphere.engine`, which the model itself uses for :meth:`EmoSphereSER.predict`.)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

from .backends import OnnxBackend, TorchBackend, int8_saturates
from .config import InferencePrecision
from .engine import Options, Predictor
from .errors import UserError, missing_extra
from .threads import default_threads

log = logging.getLogger(__name__)

BackendName = Literal["auto", "torch", "onnx"]
BACKENDS = ("auto", "torch", "onnx")


def backend_kind(model: str | os.PathLike, backend: BackendName = "auto") -> Literal["torch", "onnx"]:
    """Which backend runs ``model``: as asked, or (``auto``) onnx for an ``.onnx`` file, else torch."""
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "onnx" if Path(model).suffix.lower() == ".onnx" else "torch"
    return backend


def load_backend(
    model: str | os.PathLike,
    backend: BackendName = "auto",
    *,
    device: str = "cpu",
    precision: InferencePrecision = "fp32",
    threads: int | None = None,
) -> TorchBackend | OnnxBackend:
    """A model directory or hub id (``torch``, on ``device`` at ``precision``), or an exported
    ``.onnx`` file (``onnx``, on the CPU); ``auto`` tells them apart by the ``.onnx`` suffix.
    ``threads``: CPU threads of the model (default on the CPU: :func:`emosphere.threads.default_threads`,
    logged). Raises :class:`UserError` (a missing onnxruntime, an unknown backend) or :class:`ModelError`
    (a model that cannot load)."""
    kind = backend_kind(model, backend)
    chosen = None
    if not threads and (kind == "onnx" or device == "cpu"):
        threads, chosen = default_threads()
    if kind == "onnx":
        if device != "cpu" or precision != "fp32":
            log.warning("--device and --precision are ignored by the onnx backend (CPU, as exported)")
        try:
            loaded: TorchBackend | OnnxBackend = OnnxBackend.load(model, threads=threads, spinning=False)
        except ImportError as error:
            raise missing_extra("the onnx backend", "onnxruntime", "onnx", error) from None
        if loaded.quantization:
            log.warning(
                "%s is quantised (%s): its outputs differ slightly from the fp32 model's (docs/onnx.md)",
                model,
                loaded.quantization,
            )
        if loaded.quantization == "int8" and "weight_range" not in loaded.metadata and int8_saturates():
            log.warning(
                "%s has full 8-bit weights (an export before emosphere kept them in [-64, 64]): on this CPU (AVX2 "
                "without VNNI) its integer products saturate and its outputs are less exact; export it again "
                "(docs/onnx.md)",
                model,
            )
        count: int | str = threads or "onnxruntime's default"
    else:
        import torch

        from .model import EmoSphereSER

        loaded = TorchBackend(EmoSphereSER.from_pretrained(model, device=device), device, precision)
        if threads and device == "cpu":
            torch.set_num_threads(threads)
        count = torch.get_num_threads()
    if chosen:
        log.info("CPU threads of the model: %s (%s; --threads to choose)", count, chosen)
    return loaded


def load_predictor(
    model: str | os.PathLike,
    options: Options | None = None,
    *,
    backend: BackendName = "auto",
    device: str = "cpu",
    precision: InferencePrecision = "fp32",
    threads: int | None = None,
) -> Predictor:
    """A predictor for a model directory, hub id or exported ``.onnx`` file (see :func:`load_backend`)."""
    return Predictor(load_backend(model, backend, device=device, precision=precision, threads=threads), options)
