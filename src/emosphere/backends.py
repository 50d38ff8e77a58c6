"""A model behind numpy arrays: the backends the engine runs, and how a model is loaded into one.

A :class:`Backend` takes raw 16 kHz ``waveform`` (batch, samples) float32,
zero-padded, and ``lengths`` (batch,) int64, and returns A/V/D (batch, 3) on
[0, 1] and region logits (batch, K) or None. Beside that it says what the
engine needs to cut audio for it: its shortest input (``min_samples``), its
training crop (``window_seconds``, the default window) and its region names.

* :class:`TorchBackend`: an :class:`emosphere.model.EmoSphereSER` on a torch
  device, at a precision: ``fp32`` (exact: TF32 off on CUDA, so that batching
  never changes a prediction) or ``bf16`` / ``fp16`` autocast.
* :class:`OnnxBackend`: a file written by :func:`emosphere.export.export_onnx`,
  run with onnxruntime; it needs neither torch nor the model code.

:func:`emosphere.load.load_backend` turns what a user names (a model
directory, a hub id, an ``.onnx`` file) into one. This module imports torch
only inside :class:`TorchBackend`, so the ONNX path runs without torch. The
ONNX file format is described in docs/onnx.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .config import DEFAULT_CROP_SECONDS, PRECISIONS, InferencePrecision
from .errors import ModelError, UserError, first_line
from .sphere import RegionSet

if TYPE_CHECKING:
    from .model import EmoSphereSER

log = logging.getLogger(__name__)

METADATA_KEY = "emosphere"
"""The ONNX metadata_props key whose value is the JSON object that describes the model."""


class Backend(Protocol):
    """A model behind numpy arrays (see the module docstring)."""

    @property
    def region_names(self) -> list[str]:
        """The K columns of the region logits; empty when the model has no region head."""

    @property
    def regions(self) -> RegionSet:
        """The model's region set (the regions of a predicted point; the classes of its region head)."""

    @property
    def min_samples(self) -> int:
        """The shortest input (16 kHz samples) that the encoder turns into one frame."""

    @property
    def window_seconds(self) -> float:
        """The model's training crop: the default window of the engine."""

    def __call__(self, waveform: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]: ...


class _ExactFp32:
    """Full fp32 matrix products and convolutions on CUDA (no TF32) inside ``with exact_fp32():``: TF32
    rounds differently for each batch shape, which would let batching change a prediction. The flags
    are global: with several threads inside at once (the service's lanes), the first one in turns TF32
    off and the last one out restores it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside = 0
        self.saved = (False, False)

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        import torch

        flags = (torch.backends.cuda.matmul, torch.backends.cudnn)
        with self.lock:
            if not self.inside:
                self.saved = tuple(flag.allow_tf32 for flag in flags)
                for flag in flags:
                    flag.allow_tf32 = False
            self.inside += 1
        try:
            yield
        finally:
            with self.lock:
                self.inside -= 1
                if not self.inside:
                    for flag, value in zip(flags, self.saved):
                        flag.allow_tf32 = value


exact_fp32 = _ExactFp32()


class TorchBackend:
    """An :class:`EmoSphereSER` on ``device``, in eval mode, at ``precision`` (see the module docstring)."""

    def __init__(self, model: EmoSphereSER, device: Any = "cpu", precision: InferencePrecision = "fp32") -> None:
        import torch

        if precision not in PRECISIONS:
            raise UserError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
        self.device = torch.device(device)
        self.precision = precision
        self.model = model.to(self.device).eval()

    @property
    def region_names(self) -> list[str]:
        return self.model.region_names if self.model.region_head is not None else []

    @property
    def regions(self) -> RegionSet:
        return self.model.regions

    @property
    def min_samples(self) -> int:
        return self.model.min_samples

    @property
    def window_seconds(self) -> float:
        return self.model.crop_seconds

    def _precision(self) -> contextlib.AbstractContextManager:
        import torch

        if self.precision == "fp32":
            return exact_fp32()
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if self.precision == "bf16" else torch.float16)

    def __call__(self, waveform: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        import torch

        with torch.inference_mode(), self._precision():
            out = self.model(torch.from_numpy(waveform).to(self.device), torch.from_numpy(lengths).to(self.device))
        logits = None if out.region_logits is None else out.region_logits.float().cpu().numpy()
        return out.avd.float().cpu().numpy(), logits


def int8_saturates(cpuinfo: str | None = None) -> bool:
    """Whether onnxruntime multiplies uint8 activations by int8 weights here with AVX2's ``vpmaddubsw``,
    which adds pairs of products in 16 bits and saturates above 32767: an x86 CPU with AVX2 and no VNNI
    (docs/onnx.md, "The same on every CPU"). Files from :func:`emosphere.quantize.quantize_onnx` keep
    their weights in [-64, 64] and never saturate; older int8 files (no ``weight_range`` in their
    metadata) do on such a CPU. ``cpuinfo``: the text of /proc/cpuinfo, read when None (False where
    there is none)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = next(
        (set(line.split(":", 1)[1].split()) for line in cpuinfo.splitlines() if line.startswith("flags")), set()
    )
    return "avx2" in flags and not flags & {"avx512_vnni", "avx_vnni"}


class OnnxBackend:
    """An exported model run with onnxruntime: the same inputs and outputs as :class:`EmoSphereSER`, in numpy."""

    def __init__(self, session: Any) -> None:
        self.session = session
        props = session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in props:
            raise ValueError("not an emosphere ONNX model (no emosphere metadata)")
        self.metadata: dict[str, Any] = json.loads(props[METADATA_KEY])
        self.region_names: list[str] = list(self.metadata["region_names"])
        self.regions = RegionSet(self.metadata.get("region_set") or "octant", self.metadata.get("origin_radius", 0.0))
        self.min_samples: int = int(self.metadata["min_samples"])
        self.sample_rate: int = int(self.metadata["sample_rate"])
        self.window_seconds: float = float(self.metadata.get("window_seconds", DEFAULT_CROP_SECONDS))
        self.quantization: str | None = self.metadata.get("quantization")
        """None for an fp32 model, ``"int8"`` for one from :func:`emosphere.quantize.quantize_onnx`."""
        self.outputs: list[str] = [o.name for o in session.get_outputs()]

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        providers: list[str] | None = None,
        *,
        threads: int | None = None,
        spinning: bool = True,
    ) -> OnnxBackend:
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
