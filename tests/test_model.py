import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY_WAVLM, tiny_model_config

from emosphere.audio import AudioStats
from emosphere.encoder import Encoder
from emosphere.errors import ModelError
from emosphere.model import EmoSphereSER
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
    model.train()  # and no backward pass runs through the frozen convolutions
    assert not model.encoder.model.feature_extractor(torch.zeros(1, 800)).requires_grad


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
    model = EmoSphereSER.build(
        tiny_model_config(pooling="attentive", regions="sphere45"), AudioStats(0.02, 0.2, 10, 1)
    ).eval()
    model.save_pretrained(tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} == {"config.json", "model.safetensors", "audio_stats.json"}
    loaded = EmoSphereSER.from_pretrained(tmp_path / "m")
    x, lengths = padded_batch()
    with torch.no_grad():
        torch.testing.assert_close(model(x, lengths).avd, loaded(x, lengths).avd)
    assert loaded.stats == model.stats and loaded.region_names == model.region_names


def test_missing_model_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="no such model directory"):
        EmoSphereSER.from_pretrained(tmp_path / "nothing")
    with pytest.raises(ModelError, match="not an emosphere model"):
        EmoSphereSER.from_pretrained(tmp_path)


def test_pretrained_encoder_loads_from_a_local_directory(tmp_path):
    source = Encoder.from_config(TINY_WAVLM)
    source.model.save_pretrained(tmp_path / "wavlm")
    loaded = Encoder.from_pretrained(str(tmp_path / "wavlm"), {"layerdrop": 0.0})
    for a, b in zip(source.model.state_dict().values(), loaded.model.state_dict().values()):
        torch.testing.assert_close(a, b)


def saved(tmp_path, name="m", **changes):
    model = EmoSphereSER.build(tiny_model_config(**changes), AudioStats(0.02, 0.2, 10, 1)).eval()
    return model, model.save_pretrained(tmp_path / name)


def _corrupt_config(directory, **changes):
    meta = json.loads((directory / "config.json").read_text())
    for key, value in changes.items():
        parent = meta
        *path, leaf = key.split(".")
        for part in path:
            parent = parent[part]
        parent[leaf] = value
    (directory / "config.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "damage, file, message",
    [
        (lambda d: (d / "model.safetensors").unlink(), "model.safetensors", "missing"),
        (lambda d: (d / "audio_stats.json").unlink(), "audio_stats.json", "missing"),
        (
            lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:500]),
            "model.safetensors",
            "not a readable safetensors file",
        ),
        (lambda d: (d / "config.json").write_text('{"format_version": 1,'), "config.json", "not valid JSON"),
        (lambda d: (d / "audio_stats.json").write_text("[]"), "audio_stats.json", "JSON object"),
        (lambda d: _corrupt_config(d, format_version=2), "config.json", "format_version 2 was written by a newer"),
        (
            lambda d: _corrupt_config(d, **{"model.regions": "sphere45"}),
            "model.safetensors",
            r"region_head.net.5.weight has shape \(8, 32\), the config makes \(33, 32\)",
        ),
        (lambda d: _corrupt_config(d, **{"model.pooling": "avg"}), "config.json", "model.pooling: 'avg' is not one of"),
    ],
)
def test_damaged_model_directories_name_the_file(tmp_path, damage, file, message):
    _, directory = saved(tmp_path)
    damage(directory)
    with pytest.raises(ModelError, match=message) as error:
        EmoSphereSER.from_pretrained(directory)
    assert str(directory / file) in str(error.value)


def test_save_refuses_to_replace_a_folder_of_other_files(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(ModelError, match="not a model directory"):
        saved(tmp_path, "notes")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine"


def _outputs(model):
    x, lengths = padded_batch()
    with torch.no_grad():
        return model(x, lengths).avd


def test_a_failed_save_keeps_the_previous_model(tmp_path, monkeypatch):
    old, directory = saved(tmp_path)
    new = EmoSphereSER.build(tiny_model_config(), AudioStats(0.5, 0.5, 10, 1)).eval()

    def fail(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(AudioStats, "save", fail)  # fails after the weights, before the config
    with pytest.raises(OSError, match="simulated"):
        new.save_pretrained(directory)
    torch.testing.assert_close(_outputs(EmoSphereSER.from_pretrained(directory)), _outputs(old))
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary folder left


def test_a_failure_between_the_renames_leaves_nothing_that_loads(tmp_path, monkeypatch):
    old, directory = saved(tmp_path)
    real_replace = os.replace

    def replace(src, dst):
        if Path(dst) == directory and Path(src).name.endswith(".tmp"):  # the new folder into place
            raise OSError("killed (simulated)")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="simulated"):
        old.save_pretrained(directory)
    with pytest.raises(ModelError, match="no such model directory"):
        EmoSphereSER.from_pretrained(directory)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith(".m.old-")]
    torch.testing.assert_close(_outputs(EmoSphereSER.from_pretrained(aside[0])), _outputs(old))


KILLED_SAVE = """
import sys, time
from pathlib import Path
from conftest import tiny_model_config
from emosphere.audio import AudioStats
from emosphere.model import EmoSphereSER

def stall(self, path):
    Path(sys.argv[2]).touch()
    time.sleep(120)

AudioStats.save = stall
EmoSphereSER.build(tiny_model_config(), AudioStats(0.5, 0.5, 1, 1)).save_pretrained(sys.argv[1])
"""


def test_a_killed_save_keeps_the_previous_model(tmp_path):
    old, directory = saved(tmp_path)
    ready = tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    child = subprocess.Popen([sys.executable, "-c", KILLED_SAVE, str(directory), str(ready)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready.exists(), "the child did not reach the middle of its save"
    finally:
        child.kill()
        child.wait()
    torch.testing.assert_close(_outputs(EmoSphereSER.from_pretrained(directory)), _outputs(old))
    for partial in tmp_path.glob(".m.*"):  # the killed save's temporary folder does not load
        with pytest.raises(ModelError):
            EmoSphereSER.from_pretrained(partial)


NO_DROPOUT = {"hidden_dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0, "feat_proj_dropout": 0.0}
TRAIN_LENGTHS = [16000, 3000, 15000, 4000, 9000, 2000, 14000, 5000]


def training_loss_and_gradients(model, seed=0):
    """The training objective (per-batch CCC + region loss) on a random-length batch, and its gradients."""
    from emosphere.losses import ccc_loss, region_loss

    generator = torch.Generator().manual_seed(3)
    x = torch.zeros(len(TRAIN_LENGTHS), max(TRAIN_LENGTHS))
    for i, n in enumerate(TRAIN_LENGTHS):
        x[i, :n] = 0.1 * torch.randn(n, generator=generator)
    targets, regions = torch.rand(len(TRAIN_LENGTHS), 3, generator=generator), torch.arange(8)
    model.train()
    model.zero_grad()
    torch.manual_seed(seed)
    out = model(x, torch.tensor(TRAIN_LENGTHS))
    loss = ccc_loss(out.avd, targets) + region_loss(out.region_logits, regions, None)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def deterministic_model(**encoder_changes):
    config = tiny_model_config(pooling_dropout=0.0, head_dropout=0.0)
    config.encoder.config = {**TINY_WAVLM, **NO_DROPOUT, **encoder_changes}
    torch.manual_seed(0)
    return EmoSphereSER.build(config, AudioStats(0.0, 0.1, 1, 1))


@pytest.mark.parametrize("layerdrop", [0.0, 0.5])
def test_sub_batches_give_the_padded_batch_loss_and_gradients(layerdrop):
    from emosphere.subbatch import plan

    model = deterministic_model(layerdrop=layerdrop, num_hidden_layers=4)
    assert len(plan(TRAIN_LENGTHS, model.encoder.sub_batches)) > 1
    split_loss, split_grads = training_loss_and_gradients(model)
    model.encoder.sub_batches = 1
    whole_loss, whole_grads = training_loss_and_gradients(model)
    # With layer drop, every sub-batch skips the same layers (drawn once per batch from the same seed).
    torch.testing.assert_close(split_loss, whole_loss, atol=1e-5, rtol=0)
    assert split_grads.keys() == whole_grads.keys()
    for name in whole_grads:
        torch.testing.assert_close(split_grads[name], whole_grads[name], atol=1e-5, rtol=0, msg=name)
    model.encoder.sub_batches = 4
    if layerdrop:  # another seed drops other layers: the draw really happens
        assert not torch.allclose(training_loss_and_gradients(model, seed=1)[0], split_loss)
    assert model.encoder.model.config.layerdrop == layerdrop and len(model.encoder.model.encoder.layers) == 4


def test_a_model_saved_with_one_attention_predicts_the_same_with_the_other(tmp_path):
    config = tiny_model_config()
    config.encoder.attention = "eager"
    model = EmoSphereSER.build(config, AudioStats(0.0, 0.1, 1, 1)).eval()
    model.save_pretrained(tmp_path / "m")
    loaded = EmoSphereSER.from_pretrained(tmp_path / "m")
    attentions = {type(m).__name__ for m in loaded.modules() if "Attention" in type(m).__name__}
    assert "WavLMAttention" in attentions and "FusedWavLMAttention" not in attentions  # saved: eager
    loaded.set_attention("fused")  # any other is a switch away: same weights
    x, lengths = padded_batch()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, lengths).avd, model(x, lengths).avd, atol=1e-5, rtol=0)
    assert_batch_equals_alone(loaded)
    loaded.save_pretrained(tmp_path / "switched")
    assert EmoSphereSER.from_pretrained(tmp_path / "switched").config.encoder.attention == "fused"


def test_compiled_training_steps_match_and_compile_once_per_length_bucket():
    from torch._dynamo.utils import counters

    model = deterministic_model(layerdrop=0.5, mask_time_prob=0.5, mask_time_length=2, num_hidden_layers=4)
    hf_config = model.encoder.model.config
    hf_config.mask_time_prob = 0.0  # time masking draws from numpy: off while comparing
    plain_loss, plain_grads = training_loss_and_gradients(model)
    model.encoder.compile_training(16000, backend="eager")  # dynamo's graph capture, no code generation
    counters.clear()
    loss, grads = training_loss_and_gradients(model)
    torch.testing.assert_close(loss, plain_loss, atol=1e-5, rtol=0)
    for name in plain_grads:
        torch.testing.assert_close(grads[name], plain_grads[name], atol=1e-5, rtol=0, msg=name)
    graphs = counters["stats"]["unique_graphs"]
    hf_config.mask_time_prob = 0.5  # transformers' time masking and layer drop run between the compiled blocks
    training_loss_and_gradients(model, seed=1)
    assert not counters["graph_break"]
    assert counters["stats"]["unique_graphs"] == graphs  # same length buckets: nothing new to compile
