import pytest
import torch

from conftest import TINY_WAVLM, tiny_model_config
from emosphere.audio import AudioStats
from emosphere.model import EmoSphereSER, Encoder
from emosphere.pooling import POOLINGS

LENGTHS = [16000, 9000, 4000, 400]


def padded_batch(seed=0):
    torch.manual_seed(seed)
    x = torch.zeros(len(LENGTHS), max(LENGTHS))
    for i, n in enumerate(LENGTHS):
        x[i, :n] = 0.1 * torch.randn(n)
    return x, torch.tensor(LENGTHS)


def assert_batch_equals_alone(model, atol=1e-5):
    x, lengths = padded_batch()
    with torch.no_grad():
        batch = model(x, lengths)
        for i, n in enumerate(LENGTHS):
            alone = model(x[i : i + 1, :n], lengths[i : i + 1])
            torch.testing.assert_close(batch.avd[i], alone.avd[0], atol=atol, rtol=0)
            if batch.region_logits is not None:
                torch.testing.assert_close(batch.region_logits[i], alone.region_logits[0], atol=atol, rtol=0)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_padded_batch_equals_each_utterance_alone(pooling):
    model = EmoSphereSER.build(tiny_model_config(pooling=pooling), AudioStats(0.01, 0.1, 1, 1)).eval()
    assert_batch_equals_alone(model)


def test_group_norm_encoders_stay_exact():
    config = tiny_model_config()
    config.encoder.config = {**TINY_WAVLM, "feat_extract_norm": "group"}
    model = EmoSphereSER.build(config, AudioStats(0.0, 0.1, 1, 1)).eval()
    assert not model.encoder.exact_batches
    assert_batch_equals_alone(model)


@pytest.mark.parametrize("model_type", ["wav2vec2", "hubert", "data2vec-audio"])
def test_other_encoder_families_build_the_same_way(model_type):
    config = tiny_model_config()
    config.encoder.config = {**TINY_WAVLM, "model_type": model_type}
    model = EmoSphereSER.build(config, AudioStats(0.0, 0.1, 1, 1)).eval()
    assert_batch_equals_alone(model)


def test_feature_encoder_is_frozen_and_transformer_trains():
    model = EmoSphereSER.build(tiny_model_config())
    assert not any(p.requires_grad for p in model.encoder.model.feature_extractor.parameters())
    assert all(p.requires_grad for p in model.encoder.model.encoder.parameters())


def test_heads_and_outputs():
    model = EmoSphereSER.build(tiny_model_config(regions="sphere60"), AudioStats(0.0, 1.0, 1, 1)).eval()
    out = model(*padded_batch())
    assert out.avd.shape == (4, 3) and out.region_logits.shape == (4, 19)
    no_aux = EmoSphereSER.build(tiny_model_config(), AudioStats(0.0, 1.0, 1, 1), region_head=False).eval()
    assert no_aux(*padded_batch()).region_logits is None
    assert model.min_samples == 400
    assert model.encoder.frame_lengths(torch.tensor([400, 16000])).tolist() == [1, 49]


def test_normalisation_statistics_are_applied():
    model = EmoSphereSER.build(tiny_model_config(), AudioStats(0.0, 1.0, 1, 1)).eval()
    x, lengths = padded_batch()
    with torch.no_grad():
        plain = model(x, lengths).avd
        model.set_stats(AudioStats(0.5, 2.0, 1, 1))
        shifted = model(x * 2.0 + 0.5, lengths).avd
    torch.testing.assert_close(plain, shifted, atol=1e-5, rtol=0)


def test_save_and_load_round_trip(tmp_path):
    model = EmoSphereSER.build(tiny_model_config(pooling="attentive", regions="sphere45"),
                               AudioStats(0.02, 0.2, 10, 1)).eval()
    model.save_pretrained(tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} == {"config.json", "model.safetensors", "audio_stats.json"}
    loaded = EmoSphereSER.from_pretrained(tmp_path / "m")
    x, lengths = padded_batch()
    with torch.no_grad():
        torch.testing.assert_close(model(x, lengths).avd, loaded(x, lengths).avd)
    assert loaded.stats == model.stats and loaded.region_names == model.region_names


def test_missing_model_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model directory"):
        EmoSphereSER.from_pretrained(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="not an emosphere model"):
        EmoSphereSER.from_pretrained(tmp_path)


def test_pretrained_encoder_loads_from_a_local_directory(tmp_path):
    source = Encoder.from_config(TINY_WAVLM)
    source.model.save_pretrained(tmp_path / "wavlm")
    loaded = Encoder.from_pretrained(str(tmp_path / "wavlm"), {"layerdrop": 0.0})
    for a, b in zip(source.model.state_dict().values(), loaded.model.state_dict().values()):
        torch.testing.assert_close(a, b)
