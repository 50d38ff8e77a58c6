"""Convolutions as channels-last matrix products compute what the convolutions compute."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model
from torch import nn

from emosphere.channels_last import ChannelsLastGatedConv, MatMulConv, channels_last
from emosphere.pooling import GatedConv

TOLERANCE = 1e-5  # float32 sums of at most a few hundred products in another order


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "channels"),
    [(10, 5, 0, 1), (3, 2, 0, 8), (2, 2, 0, 8), (5, 1, 2, 8), (7, 3, 0, 3)],
    ids=["wavlm-first", "wavlm-3-2", "wavlm-2-2", "pooling-5-1", "kernel-not-a-multiple"],
)
def test_matmul_conv_equals_conv1d_for_every_length(kernel, stride, padding, channels):
    torch.manual_seed(0)
    conv = nn.Conv1d(channels, 16, kernel, stride, padding=padding)
    rewritten = MatMulConv(conv)
    for length in range(max(1, kernel - 2 * padding), kernel + 3 * stride + 1):  # 1 frame and up, every remainder
        x = torch.randn(2, channels, length)
        expected = conv(x).transpose(1, 2)
        got = rewritten(x.transpose(1, 2))
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=TOLERANCE, rtol=0)


def test_gated_conv_keeps_padding_out():
    torch.manual_seed(0)
    gated = GatedConv(16).eval()
    x = torch.randn(3, 11, 16)
    mask = torch.arange(11)[None] < torch.tensor([11, 5, 1])[:, None]
    torch.testing.assert_close(ChannelsLastGatedConv(gated)(x, mask), gated(x, mask), atol=TOLERANCE, rtol=0)


def test_the_model_gives_the_same_outputs_and_gets_its_modules_back():
    model = tiny_model()
    extractor, temporal = model.encoder.model.feature_extractor, model.pooling.temporal
    waveform = 0.1 * torch.randn(3, 9000)
    waveform[2, 4000:] = 0
    lengths = torch.tensor([9000, 6000, 4000])
    with torch.inference_mode():
        expected = model(waveform, lengths)
        with channels_last(model):
            assert model.encoder.model.feature_extractor is not extractor
            got = model(waveform, lengths)
        with pytest.raises(RuntimeError), channels_last(model):
            raise RuntimeError
    torch.testing.assert_close(got.avd, expected.avd, atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(got.region_logits, expected.region_logits, atol=TOLERANCE, rtol=0)
    assert model.encoder.model.feature_extractor is extractor and model.pooling.temporal is temporal


def test_a_group_norm_feature_extractor_is_refused():
    model = tiny_model()
    del model.encoder.model.feature_extractor.conv_layers[1].layer_norm
    with pytest.raises(ValueError, match="layer norm"), channels_last(model):
        pass
    assert not hasattr(model.encoder.model.feature_extractor, "layers")
