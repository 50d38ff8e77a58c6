"""Run an exported model with onnxruntime: numpy in, numpy out, no torch and no model code.

:class:`OnnxModel` opens a file written by :func:`emosphere.export.export_onnx`
and is an :class:`emosphere.inference.Backend`, so ``emosphere predict
--backend onnx`` takes the same inference path as the PyTorch model, in an
environment with onnxruntime and without torch. The file format is described
in docs/onnx.md.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError, first_line

log = logging.getLogger(__name__)

METADATA_KEY = "emosphere"
"""The metadata_props key whose value is the JSON object that describes the model."""


class OnnxModel:
    """An exported model run with onnxruntime: the same inputs and outputs as :class:`EmoSphereSER`, in numpy."""

    def __init__(self, session: Any) -> None:
        self.session = session
        props = session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in props:
            raise ValueError("not an emosphere ONNX model (no emosphere metadata)")
        self.metadata: dict[str, Any] = json.loads(props[METADATA_KEY])
        self.region_names: list[str] = list(self.metadata["region_names"])
        self.min_samples: int = int(self.metadata["min_samples"])
        self.sample_rate: int = int(self.metadata["sample_rate"])
        self.quantization: str | None = self.metadata.get("quantization")
        """None for an fp32 model, ``"int8"`` for one from :func:`emosphere.export.quantize_onnx`."""
        self.outputs: list[str] = [o.name for o in session.get_outputs()]

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        providers: list[str] | None = None,
        *,
        threads: int | None = None,
        spinning: bool = True,
    ) -> OnnxModel:
        """Open ``path`` on ``providers`` (default CPU; e.g. ``["CUDAExecutionProvider",
        "CPUExecutionProvider"]``); providers onnxruntime lacks are skipped with a warning.
        ``threads``: intra-op threads (default: onnxruntime's, one per physical core);
        ``spinning=False`` makes idle threads sleep instead of spin, better on a CPU shared with other work."""
        import onnxruntime as ort
        from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidGraph, InvalidProtobuf, NoSuchFile

        if not Path(path).is_file():
            raise ModelError(f"{path}: no such ONNX file")
        available = ort.get_available_providers()
        wanted = providers or ["CPUExecutionProvider"]
        missing = [p for p in wanted if p not in available]
        if missing:
            log.warning("onnxruntime here lacks %s (available: %s)", ", ".join(missing), ", ".join(available))
        usable = [p for p in wanted if p in available] or ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(str(path), options, providers=usable)
        except (Fail, InvalidGraph, InvalidProtobuf, NoSuchFile) as error:
            raise ModelError(f"{path}: not a readable ONNX model ({first_line(error)})") from error
        try:
            return cls(session)
        except ValueError as error:
            raise ModelError(f"{path}: {error}") from None

    def __call__(self, waveform: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``waveform`` (batch, samples) raw 16 kHz float32, zero-padded; ``lengths`` (batch,) valid samples.
        Returns ``avd`` (batch, 3) on [0, 1] and ``region_logits`` (batch, K) or None."""
        waveform = np.ascontiguousarray(waveform, dtype=np.float32)
        lengths = np.ascontiguousarray(lengths, dtype=np.int64)
        if waveform.ndim != 2 or lengths.shape != waveform.shape[:1]:
            raise ValueError(
                f"expected waveform (batch, samples) and lengths (batch,), got {waveform.shape} and {lengths.shape}"
            )
        if len(lengths) and (lengths.min() < 0 or lengths.max() > waveform.shape[1]):
            raise ValueError(f"lengths must lie in [0, {waveform.shape[1]}] (the padded length)")
        results = self.session.run(None, {"waveform": waveform, "lengths": lengths})
        named = dict(zip(self.outputs, results))
        return named["avd"], named.get("region_logits")
