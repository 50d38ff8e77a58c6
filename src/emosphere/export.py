"""ONNX export of a whole model.

:func:`export_onnx` writes one ``.onnx`` file holding the audio normalisation,
the encoder, the pooling and the heads: raw 16 kHz audio in, arousal, valence
and dominance on [0, 1] (and region logits) out, any batch size and length.
:class:`emosphere.backends.OnnxBackend` runs such a file with onnxruntime, without
torch. :func:`emosphere.quantize.quantize_onnx` turns such a file into an int8
one for CPUs. The file format is described in docs/onnx.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from . import __version__
from .audio import SAMPLE_RATE
from .backends import METADATA_KEY
from .channels_last import channels_last as as_matrix_products
from .io import atomic_path
from .model import EmoSphereSER
from .quantize import QUANTIZATIONS, quantize_onnx
from .sphere import DIMENSIONS

if TYPE_CHECKING:
    import onnx_ir

log = logging.getLogger(__name__)

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
        "window_seconds": model.crop_seconds,
        "dimensions": list(DIMENSIONS),
        "output_scale": OUTPUT_SCALE,
        "outputs": output_names(model),
        "region_set": model.regions.name if model.region_head is not None else None,
        "origin_radius": model.regions.origin_radius,
        "region_names": model.region_names if model.region_head is not None else [],
        "audio_mean": float(model.audio_mean),
        "audio_std": float(model.audio_std),
        "quantization": None,
    }


def export_onnx(
    model: EmoSphereSER,
    path: str | os.PathLike,
    *,
    opset: int | None = None,
    quantize: str | None = None,
    channels_last: bool = True,
) -> Path:
    """Export ``model`` (normalisation, encoder, pooling, heads) to one ONNX file at ``path``;
    with ``quantize="int8"``, quantised by :func:`emosphere.quantize.quantize_onnx`.

    Inputs ``waveform`` float32 [batch, samples] (raw 16 kHz, zero-padded) and
    ``lengths`` int64 [batch]; outputs ``avd`` float32 [batch, 3] and, with a
    region head, ``region_logits`` float32 [batch, K]. Batch and samples are
    dynamic. Uses the torch.export-based exporter; ``opset`` defaults to
    torch's. The file is written atomically and checked with onnx.checker.
    Weights over :data:`EXTERNAL_DATA_BYTES` go to ``<path>.data`` beside it. The convolutions of the
    feature extractor and of style pooling are written as matrix products (:mod:`emosphere.channels_last`);
    ``channels_last=False`` keeps them convolutions, as exported before (for comparisons: bench/int8_speed.py).
    """
    import onnx
    import onnx_ir as ir

    if quantize is not None:
        if quantize not in QUANTIZATIONS:
            raise ValueError(f"unknown quantization {quantize!r}; use one of {', '.join(QUANTIZATIONS)}")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=Path(path).parent) as tmp:
            fp32 = export_onnx(model, Path(tmp) / "fp32.onnx", opset=opset, channels_last=channels_last)
            return quantize_onnx(fp32, path)
    if not model.encoder.exact_batches:
        raise ValueError(
            "this encoder is run one utterance at a time to stay exact (group-norm feature "
            "extractor, or data2vec-audio); ONNX export supports encoders that batch exactly "
            "(feat_extract_norm 'layer': WavLM-large, wav2vec2-large, HuBERT-large) only"
        )
    onnx_model = _trace(model, opset, channels_last)
    onnx_model.metadata_props[METADATA_KEY] = json.dumps(metadata(model))
    weight_bytes = sum(
        v.const_value.nbytes for v in onnx_model.graph.initializers.values() if v.const_value is not None
    )
    path = Path(path)
    with atomic_path(path) as tmp:
        ir.save(onnx_model, tmp, external_data=f"{path.name}.data" if weight_bytes > EXTERNAL_DATA_BYTES else None)
        onnx.checker.check_model(str(tmp), full_check=False)
    return path


def _trace(model: EmoSphereSER, opset: int | None, channels_last: bool) -> onnx_ir.Model:
    """The model's graph from torch.export, its batch and sample axes dynamic and named."""
    import onnx_ir as ir

    # Two utterances of different lengths, neither 0 nor 1 long, so that nothing specialises.
    samples = max(2 * model.min_samples, SAMPLE_RATE)
    device = model.audio_mean.device
    waveform = torch.zeros(2, samples, device=device)
    lengths = torch.tensor([samples, samples * 3 // 4], device=device)
    dynamic = torch.export.Dim.DYNAMIC
    was_training = model.training
    try:
        with _quiet_exporter(), as_matrix_products(model) if channels_last else contextlib.nullcontext():
            program = torch.onnx.export(
                _Graph(model).eval(),
                (waveform, lengths),
                None,
                dynamo=True,
                opset_version=opset,
                input_names=["waveform", "lengths"],
                output_names=output_names(model),
                dynamic_shapes={"waveform": {0: dynamic, 1: dynamic}, "lengths": {0: dynamic}},
                verbose=False,
            )
    finally:
        model.train(was_training)
    onnx_model = program.model
    for value in [*onnx_model.graph.inputs, *onnx_model.graph.outputs]:  # name the dynamic axes
        dims = ["batch", "samples"] if value.name == "waveform" else ["batch", *list(value.shape)[1:]]
        value.shape = ir.Shape(dims)
    return onnx_model
