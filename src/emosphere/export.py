"""ONNX export of a whole model, and an onnxruntime runner with the model's interface.

:func:`export_onnx` writes one ``.onnx`` file holding the audio normalisation,
the encoder, the pooling and the heads: raw 16 kHz audio in, arousal, valence
and dominance on [0, 1] (and region logits) out, any batch size and length.
:class:`OnnxModel` runs such a file with onnxruntime (the file itself needs
no torch). The file format is described in docs/onnx.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import __version__
from .io import atomic_path
from .model import EmoSphereSER
from .sphere import DIMENSIONS

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
METADATA_KEY = "emosphere"
"""The metadata_props key whose value is the JSON object of :func:`metadata`."""
OUTPUT_SCALE = "arousal, valence, dominance on [0, 1]; 1-7 scale = clip(x * 6 + 1, 1, 7)"
EXTERNAL_DATA_BYTES = 1536 * 1024 * 1024
"""Weights above this size go to ``<file>.data`` beside the model (protobuf files stop at 2 GB)."""


class _Graph(nn.Module):
    """The exported function: (waveform, lengths) -> avd[, region_logits], as a flat tuple."""

    def __init__(self, model: EmoSphereSER) -> None:
        super().__init__()
        self.model = model

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(waveform, lengths)
        return (out.avd,) if out.region_logits is None else (out.avd, out.region_logits)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Keep the exporter's internal chatter (torchvision ops it skips, constant folding it skips,
    deprecations inside torch) off the console, unless emosphere logs at debug level."""
    names = [] if log.isEnabledFor(logging.DEBUG) else ["torch.onnx", "onnxscript", "onnx_ir"]
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            if loggers:
                warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def output_names(model: EmoSphereSER) -> list[str]:
    return ["avd"] if model.region_head is None else ["avd", "region_logits"]


def metadata(model: EmoSphereSER) -> dict[str, Any]:
    """What the exported file says about itself (stored as JSON under :data:`METADATA_KEY`)."""
    return {
        "format_version": 1,
        "emosphere_version": __version__,
        "sample_rate": SAMPLE_RATE,
        "min_samples": model.min_samples,
        "dimensions": list(DIMENSIONS),
        "output_scale": OUTPUT_SCALE,
        "outputs": output_names(model),
        "region_set": model.regions.name if model.region_head is not None else None,
        "region_names": model.region_names if model.region_head is not None else [],
        "audio_mean": float(model.audio_mean),
        "audio_std": float(model.audio_std),
    }


def export_onnx(model: EmoSphereSER, path: str | os.PathLike, *, opset: int | None = None) -> Path:
    """Export ``model`` (normalisation, encoder, pooling, heads) to one ONNX file at ``path``.

    Inputs ``waveform`` float32 [batch, samples] (raw 16 kHz, zero-padded) and
    ``lengths`` int64 [batch]; outputs ``avd`` float32 [batch, 3] and, with a
    region head, ``region_logits`` float32 [batch, K]. Batch and samples are
    dynamic. Uses the torch.export-based exporter; ``opset`` defaults to
    torch's. The file is written atomically and checked with onnx.checker.
    Weights over :data:`EXTERNAL_DATA_BYTES` go to ``<path>.data`` beside it.
    """
    import onnx
    import onnx_ir as ir

    if not model.encoder.exact_batches:
        raise ValueError("this encoder is run one utterance at a time to stay exact (group-norm feature "
                         "extractor, or data2vec-audio); ONNX export supports encoders that batch exactly "
                         "(feat_extract_norm 'layer': WavLM-large, wav2vec2-large, HuBERT-large) only")
    path = Path(path)
    # Two utterances of different lengths, neither 0 nor 1 long, so that nothing specialises.
    samples = max(2 * model.min_samples, SAMPLE_RATE)
    device = model.audio_mean.device
    waveform = torch.zeros(2, samples, device=device)
    lengths = torch.tensor([samples, samples * 3 // 4], device=device)
    dynamic = torch.export.Dim.DYNAMIC
    was_training = model.training
    try:
        with _quiet_exporter():
            program = torch.onnx.export(
                _Graph(model).eval(), (waveform, lengths), None, dynamo=True, opset_version=opset,
                input_names=["waveform", "lengths"], output_names=output_names(model),
                dynamic_shapes={"waveform": {0: dynamic, 1: dynamic}, "lengths": {0: dynamic}}, verbose=False,
            )
    finally:
        model.train(was_training)
    onnx_model = program.model
    for value in [*onnx_model.graph.inputs, *onnx_model.graph.outputs]:  # name the dynamic axes
        dims = ["batch", "samples"] if value.name == "waveform" else ["batch", *list(value.shape)[1:]]
        value.shape = ir.Shape(dims)
    onnx_model.metadata_props[METADATA_KEY] = json.dumps(metadata(model))
    weight_bytes = sum(v.const_value.nbytes
                       for v in onnx_model.graph.initializers.values() if v.const_value is not None)
    with atomic_path(path) as tmp:
        ir.save(onnx_model, tmp, external_data=f"{path.name}.data" if weight_bytes > EXTERNAL_DATA_BYTES else None)
        onnx.checker.check_model(str(tmp), full_check=False)
    return path


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
        self.outputs: list[str] = [o.name for o in session.get_outputs()]

    @classmethod
    def load(cls, path: str | os.PathLike, providers: list[str] | None = None, *,
             threads: int | None = None, spinning: bool = True) -> "OnnxModel":
        """Open ``path`` on ``providers`` (default CPU; e.g. ``["CUDAExecutionProvider",
        "CPUExecutionProvider"]``); providers onnxruntime lacks are skipped with a warning.
        ``threads``: intra-op threads (default: onnxruntime's, one per physical core);
        ``spinning=False`` makes idle threads sleep instead of spin, better on a CPU shared with other work."""
        import onnxruntime as ort

        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such ONNX file")
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
        return cls(ort.InferenceSession(str(path), options, providers=usable))

    def __call__(self, waveform: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``waveform`` (batch, samples) raw 16 kHz float32, zero-padded; ``lengths`` (batch,) valid samples.
        Returns ``avd`` (batch, 3) on [0, 1] and ``region_logits`` (batch, K) or None."""
        waveform = np.ascontiguousarray(waveform, dtype=np.float32)
        lengths = np.ascontiguousarray(lengths, dtype=np.int64)
        if waveform.ndim != 2 or lengths.shape != waveform.shape[:1]:
            raise ValueError(f"expected waveform (batch, samples) and lengths (batch,), got "
                             f"{waveform.shape} and {lengths.shape}")
        if len(lengths) and (lengths.min() < 0 or lengths.max() > waveform.shape[1]):
            raise ValueError(f"lengths must lie in [0, {waveform.shape[1]}] (the padded length)")
        results = self.session.run(None, {"waveform": waveform, "lengths": lengths})
        named = dict(zip(self.outputs, results))
        return named["avd"], named.get("region_logits")
