"""The model's convolutions as channels-last matrix products, for export.

The encoder's convolutional feature extractor (with layer norm,
``feat_extract_norm: layer``: WavLM-large, wav2vec2-large, HuBERT-large) runs
seven strided convolutions on (batch, channels, time) and transposes to
(batch, time, channels) and back around each layer norm; style pooling's two
gated convolutions transpose to (batch, channels, time) and back.
:func:`channels_last` swaps in modules that compute the same functions on
(batch, time, channels) throughout: each convolution is its kernel's taps of the
input side by side along the channels (im2col) times the flattened kernel, one
``MatMul`` in the exported graph. So the graph has no transposes there, and
int8 quantisation takes these products with the linear layers
(:func:`emosphere.quantize.quantize_onnx`). Same weights, same outputs up to
float rounding. The positional convolution (grouped, 128 taps) stays a
convolution: its im2col would take 128 times its input's memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from .model import EmoSphereSER
from .pooling import GatedConv, StylePooling

RAW_AUDIO_WEIGHT = "feature_extractor.layers.0.conv.weight"
"""How the name of the exported initializer of the feature extractor's first flattened kernel ends: the
one matrix product that reads raw audio (kept fp32 by :func:`emosphere.quantize.quantize_onnx`)."""


class MatMulConv(nn.Module):
    """A ``Conv1d`` (no groups or dilation) on (batch, time, channels) as one matrix product."""

    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__()
        if conv.groups != 1 or conv.dilation[0] != 1 or conv.kernel_size[0] < conv.stride[0]:
            raise ValueError("only convolutions without groups or dilation, kernel >= stride, are rewritten")
        self.kernel, self.stride, self.padding = conv.kernel_size[0], conv.stride[0], conv.padding[0]
        # (out, in, kernel) -> (kernel * in, out): row j * in + c multiplies channel c at tap j.
        weight = conv.weight.detach().permute(2, 1, 0).reshape(-1, conv.out_channels)
        self.register_buffer("weight", weight.clone(), persistent=False)
        bias = conv.bias.detach().clone() if conv.bias is not None else None
        self.register_buffer("bias", bias, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Output frame t reads input steps t * stride .. t * stride + kernel - 1. A view of the input in
        # rows of `stride` steps, starting at tap i * stride, holds in row t the taps i * stride ..
        # (i + 1) * stride - 1 of frame t; a kernel that is not a multiple of the stride takes its last
        # taps from the view that ends at the last tap (inside the input, so no padding is needed).
        # narrow and reshape only: torch.export keeps every size symbolic (a strided or clamped slice
        # makes it guard on data), and onnxruntime copies each tap's data once.
        if self.padding:
            x = F.pad(x, (0, 0, self.padding, self.padding))
        kernel, stride, channels = self.kernel, self.stride, x.shape[2]
        frames = (x.shape[1] - kernel) // stride + 1
        full, rest = divmod(kernel, stride)

        def rows(start: int) -> torch.Tensor:
            return x.narrow(1, start, stride * frames).reshape(x.shape[0], frames, stride * channels)

        taps = [rows(i * stride) for i in range(full)]
        if rest:
            taps.append(rows(kernel - stride).narrow(2, (stride - rest) * channels, rest * channels))
        y = (torch.cat(taps, dim=-1) if len(taps) > 1 else taps[0]) @ self.weight
        return y if self.bias is None else y + self.bias


class ChannelsLastFeatureLayer(nn.Module):
    """A feature-extractor layer (convolution, layer norm over channels, activation) on (batch, time, channels)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        if not hasattr(layer, "layer_norm"):
            raise ValueError("only a feature extractor with layer norm (feat_extract_norm 'layer') is rewritten")
        self.conv, self.layer_norm, self.activation = MatMulConv(layer.conv), layer.layer_norm, layer.activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.layer_norm(self.conv(x)))


class ChannelsLastFeatureEncoder(nn.Module):
    """(batch, samples) -> (batch, channels, frames), as the transformers feature encoder it replaces."""

    def __init__(self, feature_encoder: nn.Module) -> None:
        super().__init__()
        self.layers = nn.ModuleList(ChannelsLastFeatureLayer(layer) for layer in feature_encoder.conv_layers)

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        x = input_values[:, :, None]
        for layer in self.layers:
            x = layer(x)
        # The encoder transposes back to (batch, frames, channels) at once; the exporter's optimiser
        # removes the pair.
        return x.transpose(1, 2)


class ChannelsLastGatedConv(nn.Module):
    """:class:`emosphere.pooling.GatedConv` in eval mode without its transposes."""

    def __init__(self, gated: GatedConv) -> None:
        super().__init__()
        self.conv = MatMulConv(gated.conv)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x * mask.unsqueeze(-1).to(x.dtype)
        return x + F.glu(self.conv(x), dim=-1)


@contextmanager
def channels_last(model: EmoSphereSER) -> Iterator[None]:
    """Inside the block, ``model`` (in eval mode) runs its feature extractor and style pooling's gated
    convolutions as channels-last matrix products; the original modules are put back after it."""
    encoder = model.encoder.model
    extractor = encoder.feature_extractor
    pooling = model.pooling if isinstance(model.pooling, StylePooling) else None
    temporal = pooling.temporal if pooling is not None else None
    device = model.audio_mean.device
    encoder.feature_extractor = ChannelsLastFeatureEncoder(extractor).to(device)
    if pooling is not None:
        pooling.temporal = nn.ModuleList(ChannelsLastGatedConv(conv) for conv in temporal).to(device)
    try:
        yield
    finally:
        encoder.feature_extractor = extractor
        if pooling is not None:
            pooling.temporal = temporal
