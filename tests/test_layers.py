"""model.encoder.layers: the first N transformer layers of a pretrained encoder, saved and exported so."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY_WAVLM
from transformers import AutoModel

from emosphere.audio import AudioStats
from emosphere.config import ConfigError, EncoderConfig, ModelConfig
from emosphere.encoder import Encoder
from emosphere.model import EmoSphereSER
from emosphere.preflight import encoder_min_samples

WAVE = 0.1 * torch.randn(2, 8000, generator=torch.Generator().manual_seed(0))
LENGTHS = torch.tensor([8000, 5000])


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A 3-layer WavLM saved as transformers saves a pretrained encoder."""
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("wavlm") / "wavlm-3"
    Encoder.from_config({**TINY_WAVLM, "num_hidden_layers": 3}).model.save_pretrained(directory)
    return directory


def build(pretrained, layers: int) -> EmoSphereSER:
    encoder = EncoderConfig(name=str(pretrained), config={"layerdrop": 0.0}, layers=layers)
    torch.manual_seed(1)
    return EmoSphereSER.build(ModelConfig(encoder=encoder), AudioStats(0.0, 0.1, 1, 1)).eval()


@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")  # transformers' eager WavLM
def test_the_first_layers_are_kept_as_transformers_would_build_them(pretrained):
    model = build(pretrained, 2)
    assert len(model.encoder.model.encoder.layers) == 2 and model.encoder.model.config.num_hidden_layers == 2
    reference = AutoModel.from_pretrained(pretrained, num_hidden_layers=2, layerdrop=0.0).eval()
    mask = (torch.arange(8000)[None] < LENGTHS[:, None]).long()
    with torch.inference_mode():
        frames, _ = model.encoder(WAVE, LENGTHS)
        expected = reference(WAVE, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(frames, expected, atol=1e-5, rtol=0)
    assert len(build(pretrained, 0).encoder.model.encoder.layers) == 3


def test_a_cut_model_saves_reloads_and_exports_with_its_layers(pretrained, tmp_path):
    from emosphere.backends import OnnxBackend
    from emosphere.export import export_onnx

    model = build(pretrained, 1)
    model.save_pretrained(tmp_path / "model")
    meta = json.loads((tmp_path / "model" / "config.json").read_text())
    assert meta["model"]["encoder"]["layers"] == 1 and meta["encoder_config"]["num_hidden_layers"] == 1
    loaded = EmoSphereSER.from_pretrained(tmp_path / "model")
    assert len(loaded.encoder.model.encoder.layers) == 1
    with torch.inference_mode():
        expected = model(WAVE, LENGTHS).avd
        torch.testing.assert_close(loaded(WAVE, LENGTHS).avd, expected, atol=1e-6, rtol=0)
    onnx_model = OnnxBackend.load(export_onnx(loaded, tmp_path / "model.onnx"))
    np.testing.assert_allclose(onnx_model(WAVE.numpy(), LENGTHS.numpy())[0], expected.numpy(), atol=1e-4, rtol=0)


def test_more_layers_than_the_encoder_has_is_a_config_error(pretrained):
    with pytest.raises(ConfigError, match="model.encoder.layers: 4, but .* has 3 transformer layers"):
        encoder_min_samples(EncoderConfig(name=str(pretrained), layers=4))
    with pytest.raises(ConfigError, match="model.encoder.layers: 4, but the encoder has 3"):
        build(pretrained, 4)


def test_a_random_encoder_is_built_with_that_many_layers():
    encoder = EncoderConfig(name="tiny", pretrained=False, config=dict(TINY_WAVLM), layers=1)
    model = EmoSphereSER.build(ModelConfig(encoder=encoder), AudioStats(0.0, 0.1, 1, 1))
    assert len(model.encoder.model.encoder.layers) == 1
