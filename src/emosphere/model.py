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
import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel

from .attention import set_wavlm_attention
from .audio import AudioStats
from .config import Attention, ConfigError, ModelConfig, from_dict
from .errors import ModelError, first_line
from .io import atomic_directory
from .pooling import build_pooling
from .sphere import DIMENSIONS, RegionSet
from .subbatch import LengthBuckets, plan

if TYPE_CHECKING:
    import pandas as pd

    from .inputs import Input

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
STATS_FILE = "audio_stats.json"
FORMAT_VERSION = 1
MODEL_FILES = frozenset({CONFIG_FILE, WEIGHTS_FILE, STATS_FILE})


def min_input_samples(config: PretrainedConfig) -> int:
    """Shortest input (16 kHz samples) that a wav2vec2-family encoder of ``config`` turns into one frame."""
    samples = 1
    for kernel, stride in reversed(list(zip(config.conv_kernel, config.conv_stride))):
        samples = (samples - 1) * stride + kernel
    return samples


class Encoder(nn.Module):
    """A transformers speech encoder that returns frame features and their valid-frame mask.

    Frame counts come from the encoder's own output-length rule. Two kinds of
    encoder would let padding change the valid frames, so they are run one
    utterance at a time to stay exact: those whose feature extractor uses
    group norm (the *-base models; it normalises over the whole padded input)
    and data2vec-audio (its stacked positional convolutions spread padding
    into valid frames after transformers zeroes it once).

    How it runs changes no result (up to float rounding):

    * ``attention``: WavLM's self-attention on fused kernels
      (:mod:`emosphere.attention`) or transformers' eager path; for the other
      families, transformers' ``sdpa`` or ``eager``. :meth:`set_attention`
      (``EmoSphereSER.set_attention`` also records the choice in the config).
    * ``sub_batches``: a batch is encoded in up to this many length-sorted
      sub-batches (:mod:`emosphere.subbatch`) and put back in order.
    * :meth:`compile_training`: the encoder's blocks are compiled for training
      steps, with sub-batch lengths rounded up to a fixed ladder.

    In training, layer drop is drawn once per batch, so all of a batch's
    sub-batches skip the same layers, as one encoder call would.
    """

    _PADDING_LEAKS = frozenset({"data2vec-audio"})

    def __init__(
        self,
        model: PreTrainedModel,
        freeze_feature_encoder: bool = True,
        attention: Attention = "fused",
        sub_batches: int = 4,
    ) -> None:
        super().__init__()
        self.model = model
        if freeze_feature_encoder:
            # transformers' own switch (HubertModel lacks the public freeze_feature_encoder): besides
            # the parameters it stops the feature extractor from making its input require grad (a
            # backward pass through the frozen convolutions for nothing, and a graph break).
            model.feature_extractor._freeze_parameters()
        self.exact_batches = (
            getattr(model.config, "feat_extract_norm", "layer") != "group"
            and model.config.model_type not in self._PADDING_LEAKS
        )
        if not self.exact_batches:
            log.info("%s encoder: utterances are encoded one at a time to stay exact", model.config.model_type)
        self.sub_batches = sub_batches
        self.buckets: LengthBuckets | None = None
        self.set_attention(attention)

    def set_attention(self, attention: Attention) -> None:
        """Run self-attention on ``fused`` kernels or transformers' ``eager`` path; weights are untouched."""
        if self.model.config.model_type == "wavlm":
            set_wavlm_attention(self.model, attention)
        else:
            self.model.set_attn_implementation({"fused": "sdpa", "eager": "eager"}[attention])

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @property
    def min_samples(self) -> int:
        """Shortest input that yields one frame."""
        return min_input_samples(self.model.config)

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.model._get_feat_extract_output_lengths(lengths).to(torch.long)

    def _samples_for(self, frames: int) -> int:
        """Fewest samples that give ``frames`` frames."""
        return (frames - 1) * math.prod(self.model.config.conv_stride) + self.min_samples

    def _padded_length(self, samples: int) -> int:
        """Samples a sub-batch whose longest utterance has ``samples`` is padded (or cut) to."""
        if self.buckets is None or not self.training:
            return samples
        return self._samples_for(self.buckets.round_up(int(self.frame_lengths(torch.tensor(samples)))))

    def _encode(self, waveform: torch.Tensor, lengths: torch.Tensor, samples: int) -> torch.Tensor:
        """Frames of a (sub-)batch padded or cut to ``samples`` (samples past the last frame never count)."""
        width = waveform.shape[1]
        waveform = waveform[:, :samples] if samples <= width else F.pad(waveform, (0, samples - width))
        positions = torch.arange(samples, device=waveform.device)
        attention_mask = (positions[None, :] < lengths[:, None]).long()
        with warnings.catch_warnings():
            # WavLM's eager attention mixes a float position bias with a bool padding mask; harmless.
            warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask")
            return self.model(waveform, attention_mask=attention_mask).last_hidden_state

    def _encode_sub_batches(self, waveform: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling() or torch.jit.is_tracing():  # export: the plan needs the lengths' values
            return self._encode(waveform, lengths, waveform.shape[1])
        sizes = lengths.tolist()
        groups = plan(sizes, self.sub_batches, self._padded_length)
        if len(groups) == 1:
            return self._encode(waveform, lengths, self._padded_length(max(sizes)))
        parts = []
        for group in groups:
            rows = torch.tensor(group, device=waveform.device)
            parts.append(self._encode(waveform[rows], lengths[rows], self._padded_length(sizes[group[0]])))
        frames = max(part.shape[1] for part in parts)
        stacked = torch.cat([F.pad(part, (0, 0, 0, frames - part.shape[1])) for part in parts])
        order = torch.tensor([i for group in groups for i in group], device=waveform.device)
        return stacked[torch.argsort(order)]  # back in the batch's order

    @contextmanager
    def _layer_drop_per_batch(self) -> Iterator[None]:
        """Draw transformers' layer drop once for the whole batch (layer 0 is never dropped)."""
        config, layers = self.model.config, getattr(self.model.encoder, "layers", None)
        p = getattr(config, "layerdrop", 0.0)
        if not self.training or not p or layers is None:
            yield
            return
        kept = [layer for i, layer in enumerate(layers) if i == 0 or torch.rand([]) >= p]
        self.model.encoder.layers, config.layerdrop = nn.ModuleList(kept), 0.0
        try:
            yield
        finally:
            self.model.encoder.layers, config.layerdrop = layers, p

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frame_lengths = self.frame_lengths(lengths)
        with self._layer_drop_per_batch():
            if self.exact_batches:
                frames = self._encode_sub_batches(waveform, lengths)
            else:
                alone = [self.model(waveform[i : i + 1, : int(n)]).last_hidden_state[0] for i, n in enumerate(lengths)]
                frames = nn.utils.rnn.pad_sequence(alone, batch_first=True)
        positions = torch.arange(frames.shape[1], device=frames.device)
        return frames, positions[None, :] < frame_lengths[:, None]

    def compile_training(self, max_samples: int, backend: str = "inductor") -> None:
        """Compile the encoder's blocks (feature extractor, projection, positional convolution and each
        transformer layer) for training steps; evaluation runs them uncompiled.

        In training, sub-batches are padded up to a :class:`LengthBuckets` ladder topped at
        ``max_samples`` (the training crop), so each block compiles once per rung it meets (and once
        more for a single utterance); the number of utterances is a dynamic size. The glue between
        the blocks stays eager: transformers' time masking (numpy) and layer drop break no graph.
        ``backend``: torch.compile's.
        """
        self.buckets = LengthBuckets(int(self.frame_lengths(torch.tensor(max_samples))))
        # One compiled layer is reused by all layers, but each rung, layer 0 (which computes the
        # position bias) and a single utterance are separate entries: allow for them.
        limit = 4 * len(self.buckets.rungs) + 8
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, limit)
        encoder = self.model.encoder
        blocks = [
            self.model.feature_extractor,
            self.model.feature_projection,
            getattr(encoder, "pos_conv_embed", None),
            *encoder.layers,
        ]
        for block in blocks:
            if block is not None:
                block.forward = _CompiledForTraining(block, backend)

    @classmethod
    def from_config(cls, config: dict[str, Any], freeze_feature_encoder: bool = True, **options: Any) -> Encoder:
        """Randomly initialised, from a transformers config dict that names ``model_type``;
        ``options``: ``attention``, ``sub_batches``."""
        values = dict(config)
        if "model_type" not in values:
            raise ValueError("encoder.config must name model_type (e.g. wavlm) to build an encoder from scratch")
        hf_config = AutoConfig.for_model(values.pop("model_type"), **values)
        return cls(AutoModel.from_config(hf_config), freeze_feature_encoder, **options)

    @classmethod
    def from_pretrained(
        cls, name: str, overrides: dict[str, Any] | None = None, freeze_feature_encoder: bool = True, **options: Any
    ) -> Encoder:
        """Pretrained weights from a hub id or local directory; ``overrides`` set config values;
        ``options``: ``attention``, ``sub_batches``."""
        values = {k: v for k, v in (overrides or {}).items() if k != "model_type"}
        return cls(AutoModel.from_pretrained(name, **values), freeze_feature_encoder, **options)


class _CompiledForTraining:
    """A block's ``forward`` compiled for training (see :meth:`Encoder.compile_training`): dim 0 of
    the first input and of ``attention_mask`` (the utterances) is dynamic, every other size static."""

    def __init__(self, block: nn.Module, backend: str) -> None:
        self.block, self.eager = block, block.forward
        self.compiled = torch.compile(self.eager, backend=backend)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.block.training:
            return self.eager(*args, **kwargs)
        batched = (args[0], kwargs.get("attention_mask"))
        for t in (*args, *kwargs.values()):
            if isinstance(t, torch.Tensor):
                dynamic = any(t is b for b in batched)
                if dynamic:
                    torch._dynamo.maybe_mark_dynamic(t, 0)
                for dim in range(int(dynamic), t.dim()):
                    torch._dynamo.mark_static(t, dim)
        return self.compiled(*args, **kwargs)


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
        self.regions = RegionSet(config.regions, config.origin_radius)
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
            encoder = Encoder.from_pretrained(enc.name, enc.config, enc.freeze_feature_encoder, **options)
        else:
            encoder = Encoder.from_config(enc.config, enc.freeze_feature_encoder, **options)
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
    ) -> pd.DataFrame:
        """Predict audio files, folders, manifests, globs or arrays; one row per file, plus one per
        window for audio longer than ``window`` seconds (default 12; ``hop`` default 6). Arrays are
        (samples,) or (samples, channels) at ``sampling_rate`` (required for them) and are named
        ``array_<i>``. Inputs that fail (unreadable, too short) are logged, left out and listed in
        ``table.attrs["errors"]``. Runs on the model's device at ``precision`` (fp32, bf16 or fp16)
        and puts the model in eval mode. Columns: see docs/predict.md; the rule for windows and
        aggregation: :mod:`emosphere.inference`."""
        from .inference import TorchBackend, predict_table
        from .inputs import as_sources

        backend = TorchBackend(self, next(self.parameters()).device, precision)
        return predict_table(
            backend, as_sources(inputs, sampling_rate), batch_size=batch_size, window=window, hop=hop, progress=progress
        )

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
            "sample_rate": 16000,
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
