"""The speech encoder: a transformers wav2vec2-family model (WavLM by default) that turns raw
16 kHz audio into frame features and the mask of valid frames.

:class:`Encoder` owns how the encoder runs (fused attention, padding-free
sub-batches, compiled training blocks, layer drop per batch) without changing
what it computes; :func:`min_input_samples` is the shortest input that gives
one frame. :class:`emosphere.model.EmoSphereSER` puts pooling and heads on top.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel

from .attention import set_wavlm_attention
from .config import Attention, ConfigError
from .subbatch import LengthBuckets, plan

log = logging.getLogger(__name__)


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
    def from_config(
        cls, config: dict[str, Any], freeze_feature_encoder: bool = True, layers: int = 0, **options: Any
    ) -> Encoder:
        """Randomly initialised, from a transformers config dict that names ``model_type``; ``layers``:
        transformer layers (0: the config's ``num_hidden_layers``); ``options``: ``attention``, ``sub_batches``."""
        values = dict(config)
        if "model_type" not in values:
            raise ValueError("encoder.config must name model_type (e.g. wavlm) to build an encoder from scratch")
        if layers:
            values["num_hidden_layers"] = layers
        hf_config = AutoConfig.for_model(values.pop("model_type"), **values)
        return cls(AutoModel.from_config(hf_config), freeze_feature_encoder, **options)

    @classmethod
    def from_pretrained(
        cls,
        name: str,
        overrides: dict[str, Any] | None = None,
        freeze_feature_encoder: bool = True,
        layers: int = 0,
        **options: Any,
    ) -> Encoder:
        """Pretrained weights from a hub id or local directory; ``overrides`` set config values; ``layers``:
        keep the first N transformer layers (0: all, :func:`keep_first_layers`); ``options``: ``attention``,
        ``sub_batches``."""
        values = {k: v for k, v in (overrides or {}).items() if k != "model_type"}
        model = AutoModel.from_pretrained(name, **values)
        keep_first_layers(model, layers)
        return cls(model, freeze_feature_encoder, **options)


def keep_first_layers(model: PreTrainedModel, layers: int) -> None:
    """Cut ``model`` (a transformers wav2vec2-family encoder) to its first ``layers`` transformer layers,
    in place, and say so in its config, so that it saves and reloads with that many; 0 keeps all. The
    encoder's final layer norm (in the large models) then follows layer N. WavLM's relative position
    bias lives in layer 0 and stays."""
    total = len(model.encoder.layers)
    if layers > total:
        raise ConfigError(f"model.encoder.layers: {layers}, but the encoder has {total} transformer layers")
    if layers and layers < total:
        model.encoder.layers = model.encoder.layers[:layers]
        model.config.num_hidden_layers = layers


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
