"""The EmoSphere-SER model: encoder -> pooling -> regression head (+ region head).

``EmoSphereSER`` takes raw 16 kHz mono waveforms and their lengths, applies
the global audio normalisation it carries, encodes them with a wav2vec2-family
encoder from transformers (WavLM-large by default; its convolutional feature
encoder frozen), pools the frames (style pooling by default; see
:mod:`emosphere.pooling`) and predicts arousal, valence and dominance on
[0, 1] and, when trained with the auxiliary task, logits over the regions of
the emotion sphere (:mod:`emosphere.sphere`).

A trained model is a directory: ``config.json`` (architecture, encoder config,
region names, the run config), ``model.safetensors`` and ``audio_stats.json``.
It loads with :meth:`EmoSphereSER.from_pretrained` and no training code.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig

from .audio import SAMPLE_RATE, AudioStats
from .config import DEFAULT_CROP_SECONDS, Attention, ConfigError, ModelConfig, from_dict
from .encoder import Encoder
from .errors import ModelError, first_line
from .io import atomic_directory
from .pooling import build_pooling
from .rundir import RunDir
from .sphere import DIMENSIONS

if TYPE_CHECKING:
    import pandas as pd

    from .inputs import Input
    from .vad import VadSettings

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
STATS_FILE = "audio_stats.json"
FORMAT_VERSION = 1
MODEL_FILES = frozenset({CONFIG_FILE, WEIGHTS_FILE, STATS_FILE})


class Head(nn.Module):
    """Dropout -> Linear -> LayerNorm -> ReLU -> Dropout -> Linear (no output activation)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(in_dim, hidden),
            nn.LayerNorm(hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Output(NamedTuple):
    avd: torch.Tensor
    """(batch, 3) arousal, valence, dominance on [0, 1] (map to 1-7 by x * 6 + 1)."""
    region_logits: torch.Tensor | None
    """(batch, K) logits over the region set's classes, or None without a region head."""


class EmoSphereSER(nn.Module):
    """Speech emotion recognition: raw 16 kHz mono audio -> arousal, valence, dominance (+ region)."""

    def __init__(
        self, config: ModelConfig, encoder: Encoder, stats: AudioStats | None = None, region_head: bool = True
    ) -> None:
        super().__init__()
        self.config = config
        self.regions = config.region_set()
        self.encoder = encoder
        dim = encoder.hidden_size
        self.pooling = build_pooling(config.pooling, dim, heads=config.attention_heads, dropout=config.pooling_dropout)
        hidden = config.head_hidden or dim
        pooled = self.pooling.output_dim
        self.regression_head = Head(pooled, hidden, len(DIMENSIONS), config.head_dropout)
        self.region_head = Head(pooled, hidden, self.regions.num_classes, config.head_dropout) if region_head else None
        self.register_buffer("audio_mean", torch.zeros(()), persistent=False)
        self.register_buffer("audio_std", torch.ones(()), persistent=False)
        self.stats: AudioStats | None = None
        self.run_config: dict[str, Any] | None = None
        if stats is not None:
            self.set_stats(stats)

    @classmethod
    def build(cls, config: ModelConfig, stats: AudioStats | None = None, region_head: bool = True) -> EmoSphereSER:
        """A new model whose encoder is loaded (pretrained) or built (random) as ``config.encoder`` says."""
        enc = config.encoder
        options = {"attention": enc.attention, "sub_batches": enc.sub_batches}
        if enc.pretrained:
            encoder = Encoder.from_pretrained(enc.name, enc.config, enc.freeze_feature_encoder, enc.layers, **options)
        else:
            encoder = Encoder.from_config(enc.config, enc.freeze_feature_encoder, enc.layers, **options)
        return cls(config, encoder, stats, region_head)

    def set_attention(self, attention: Attention) -> None:
        """Run the encoder's self-attention on ``fused`` kernels or the ``eager`` path (same weights,
        same function); the config, and so a saved model, records the choice."""
        self.encoder.set_attention(attention)
        self.config.encoder.attention = attention

    def set_stats(self, stats: AudioStats) -> None:
        self.stats = stats
        self.audio_mean.fill_(stats.mean)
        self.audio_std.fill_(stats.std)

    @property
    def region_names(self) -> list[str]:
        return self.regions.class_names

    @property
    def min_samples(self) -> int:
        return self.encoder.min_samples

    @property
    def crop_seconds(self) -> float:
        """The training crop (the run's data.max_seconds; 12 s, the paper's, for a model without a run
        config): prediction cuts audio into windows of this length."""
        return float(((self.run_config or {}).get("data") or {}).get("max_seconds", DEFAULT_CROP_SECONDS))

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor) -> Output:
        """``waveform``: (batch, samples) raw 16 kHz audio, zero-padded; ``lengths``: (batch,) valid samples."""
        waveform = (waveform - self.audio_mean) / self.audio_std
        frames, mask = self.encoder(waveform, lengths)
        pooled = self.pooling(frames, mask)
        logits = self.region_head(pooled) if self.region_head is not None else None
        return Output(self.regression_head(pooled), logits)

    def predict(
        self,
        inputs: Input | list[Input],
        sampling_rate: int | None = None,
        *,
        batch_size: int = 8,
        window: float | None = None,
        hop: float | None = None,
        precision: str = "fp32",
        progress: bool = False,
        segments: str = "fixed",
        vad: VadSettings | None = None,
    ) -> pd.DataFrame:
        """Predict audio files, folders, manifests, globs or arrays; one row per file, plus one per
        window for audio longer than ``window`` seconds (default: the training crop, 12 s; ``hop``
        default: half the window). Arrays are (samples,) or (samples, channels) at ``sampling_rate``
        (required for them) and are named ``array_<i>``. Inputs that fail (unreadable, too short)
        are logged, left out and listed in ``table.attrs["errors"]``. Runs on the model's device at
        ``precision`` (fp32, bf16 or fp16) and puts the model in eval mode. ``segments="vad"``
        predicts only the speech a voice activity detector finds (settings ``vad``; see
        :mod:`emosphere.segments`). Columns: see docs/predict.md; the rule for windows and
        aggregation: :mod:`emosphere.engine`."""
        from .backends import TorchBackend
        from .engine import Options, Predictor
        from .inputs import as_sources
        from .segments import with_segments

        backend = TorchBackend(self, next(self.parameters()).device, precision)
        options = Options(batch_size=batch_size, window=window, hop=hop)
        predictor = with_segments(Predictor(backend, options), segments, vad)
        return predictor.table(as_sources(inputs, sampling_rate), progress=progress)

    # --- the model directory ---------------------------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json``, ``model.safetensors`` and ``audio_stats.json`` to ``directory``.

        The files are written to a temporary folder beside it, which then replaces ``directory``
        (:func:`emosphere.io.atomic_directory`): an interrupted save never leaves a folder that
        loads as a complete model, and a previous model there stays whole until the new one is.
        A folder that holds other files is not replaced (:class:`ModelError`)."""
        if self.stats is None:
            raise ValueError("the model has no audio normalisation statistics; call set_stats first")
        directory = Path(directory)
        if directory.exists() and not (directory.is_dir() and {p.name for p in directory.iterdir()} <= MODEL_FILES):
            raise ModelError(f"{directory}: exists and is not a model directory; save to a new or empty folder")
        encoder_config = self.encoder.model.config.to_dict()
        meta = {
            "format_version": FORMAT_VERSION,
            "model": asdict(self.config),
            "encoder_config": encoder_config,
            "region_head": self.region_head is not None,
            "region_set": self.regions.name,
            "region_names": self.region_names,
            "dimensions": list(DIMENSIONS),
            "output_scale": "arousal, valence, dominance on [0, 1]; 1-7 scale = x * 6 + 1",
            "sample_rate": SAMPLE_RATE,
            "run": self.run_config,
        }
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic_directory(directory) as tmp:
            save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
            self.stats.save(tmp / STATS_FILE)
            (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return directory

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, device: str | torch.device = "cpu") -> EmoSphereSER:
        """Load a model directory, or download one from the Hugging Face hub by id.

        A missing or corrupt file, a config from a newer format version and weights that do not fit
        the config raise :class:`ModelError` naming the file."""
        directory = Path(name_or_path).expanduser()
        if RunDir.holds_run(directory):
            raise ModelError(f"{name_or_path}: a training run directory; its model is {RunDir(directory).model_dir}")
        if not directory.is_dir():
            text = str(name_or_path)
            if directory.is_absolute() or text.startswith((".", "~")) or text.count("/") > 1 or directory.exists():
                raise ModelError(f"{name_or_path}: no such model directory")
            from huggingface_hub import snapshot_download

            try:
                directory = Path(snapshot_download(str(name_or_path)))
            except (OSError, ValueError) as error:  # not found, offline, or not a valid repo id
                raise ModelError(
                    f"{name_or_path}: no such model directory, and the hub does not give it ({first_line(error)})"
                ) from error
        config_path = directory / CONFIG_FILE
        if not config_path.is_file():
            raise ModelError(f"{directory}: not an emosphere model directory (no {CONFIG_FILE})")
        meta = _read_json(config_path)
        version = meta.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise ModelError(f"{config_path}: no format_version; not an emosphere model config")
        if version > FORMAT_VERSION:
            raise ModelError(
                f"{config_path}: format_version {version} was written by a newer emosphere; this one "
                f"reads up to {FORMAT_VERSION} (pip install -U emosphere)"
            )
        missing = [key for key in ("model", "encoder_config", "region_head") if key not in meta]
        if missing:
            raise ModelError(f"{config_path}: missing {', '.join(missing)}; not an emosphere model config")
        try:
            config = from_dict(ModelConfig, meta["model"], prefix="model.")
            encoder_values = dict(meta["encoder_config"])
            hf_config: PretrainedConfig = AutoConfig.for_model(encoder_values.pop("model_type"), **encoder_values)
        except (ConfigError, KeyError, ValueError, TypeError) as error:
            raise ModelError(f"{config_path}: {first_line(error)}") from error
        enc = config.encoder
        encoder = Encoder(AutoModel.from_config(hf_config), enc.freeze_feature_encoder, enc.attention, enc.sub_batches)
        stats_path = directory / STATS_FILE
        try:
            stats = AudioStats(**_read_json(stats_path))
        except TypeError as error:
            raise ModelError(f"{stats_path}: {first_line(error)}") from error
        model = cls(config, encoder, stats, bool(meta["region_head"]))
        model.load_state_dict(_read_weights(directory / WEIGHTS_FILE, model.state_dict()))
        model.run_config = meta.get("run")
        return model.to(device).eval()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{path}: missing from the model directory") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelError(f"{path}: not valid JSON ({first_line(error)})") from None
    if not isinstance(value, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return value


def _read_weights(path: Path, expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, checked against the names and shapes of ``expected``."""
    if not path.is_file():
        raise ModelError(f"{path}: missing from the model directory")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise ModelError(f"{path}: not a readable safetensors file ({first_line(error)})") from error
    wrong = [f"{k} missing" for k in expected if k not in state]
    wrong += [f"{k} not in the model" for k in state if k not in expected]
    wrong += [
        f"{k} has shape {tuple(v.shape)}, the config makes {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if wrong:
        raise ModelError(
            f"{path}: the weights do not fit {CONFIG_FILE}: {'; '.join(wrong[:3])}"
            + (f" and {len(wrong) - 3} more" if len(wrong) > 3 else "")
        )
    return state
