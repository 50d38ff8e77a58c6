import functools

import pytest
import torch
from conftest import LARGE_WAVLM, TINY_WAVLM
from transformers import AutoConfig, AutoModel
from transformers.models.wavlm.modeling_wavlm import WavLMAttention

from emosphere.attention import FusedWavLMAttention, set_wavlm_attention
from emosphere.backends import exact_fp32

NO_DROPOUT = {"hidden_dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0, "feat_proj_dropout": 0.0}
LENGTHS = [16000, 9000, 4000, 400]
SHAPES = {"tiny": {}, "large": {**LARGE_WAVLM, "num_hidden_layers": 2}}  # the layers repeat: two show each kind
TOLERANCE = {"fp32": 1e-6, "fp16": 8e-3, "bf16": 4e-2}
"""Largest |fused - eager|, as a share of the largest |eager| output or parameter gradient. Measured on the
CPU (torch 2.13): fp32 5e-7 (outputs) and 1.5e-7 (gradients, large shape); fp16 1.3e-3 and 4.9e-4; bf16
1.0e-2 and 7.5e-3. Some gradients are zero but for rounding (a key bias shifts every score of a query
alike), hence the model's largest gradient as the scale."""


def wavlm(**changes):
    values = {**TINY_WAVLM, **changes}
    torch.manual_seed(0)
    return AutoModel.from_config(AutoConfig.for_model(values.pop("model_type"), **values))


def padded_batch(device="cpu"):
    torch.manual_seed(1)
    x = torch.zeros(len(LENGTHS), max(LENGTHS))
    for i, n in enumerate(LENGTHS):
        x[i, :n] = 0.1 * torch.randn(n)
    mask = (torch.arange(x.shape[1])[None, :] < torch.tensor(LENGTHS)[:, None]).long()
    return x.to(device), mask.to(device)


def precision_context(device, precision):
    """fp32 (TF32 off, as prediction runs it on CUDA), or bf16 / fp16 autocast."""
    if precision == "fp32":
        return exact_fp32()
    return torch.autocast(torch.device(device).type, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[precision])


def run(model, attention, train, precision="fp32"):
    """Outputs (as fp32) and every parameter gradient of the padded batch, on the model's device."""
    set_wavlm_attention(model, attention)
    model.train(train)
    model.zero_grad()
    device = next(model.parameters()).device
    x, mask = padded_batch(device)
    torch.manual_seed(2)  # the same attention dropout masks, where there is dropout
    with precision_context(device, precision):
        out = model(x, attention_mask=mask).last_hidden_state.float()
    frames = model._get_feat_extract_output_lengths(torch.tensor(LENGTHS, device=device))
    positions = torch.arange(out.shape[1], device=device)
    valid = positions[None, :, None] < frames[:, None, None]  # padded frames are never used
    (out * torch.linspace(-1, 1, out.numel(), device=device).view_as(out) * valid).sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return out.detach(), grads


@pytest.mark.parametrize("train, dropout", [(True, 0.0), (False, 0.0), (True, 0.3)])
def test_fused_matches_eager_outputs_and_gradients(train, dropout):
    # Off CUDA, attention dropout runs explicitly and draws the eager path's masks.
    model = wavlm(**{**NO_DROPOUT, "attention_dropout": dropout})
    eager_out, eager_grads = run(model, "eager", train)
    fused_out, fused_grads = run(model, "fused", train)
    torch.testing.assert_close(fused_out, eager_out, atol=1e-5, rtol=0)
    assert fused_grads.keys() == eager_grads.keys()
    relative = [name for name in eager_grads if "rel_attn_embed" in name or "gru_rel_pos" in name]
    assert len(relative) == 1 + 3 * TINY_WAVLM["num_hidden_layers"]  # the bias embedding and every gate
    for name in eager_grads:
        assert eager_grads[name].abs().max() > 0, name
        torch.testing.assert_close(fused_grads[name], eager_grads[name], atol=1e-5, rtol=0, msg=name)


@functools.cache
def shaped_model(shape, device):
    """A random WavLM of ``shape`` without dropout on ``device``, built once per module."""
    return wavlm(**NO_DROPOUT, **SHAPES[shape]).to(device)


CUDA = pytest.mark.cuda
CASES = [  # on the CPU, train and eval mode run the same arithmetic here (no dropout): one is enough
    ("cpu", "tiny", True),
    *(pytest.param("cuda", shape, train, marks=CUDA) for shape in SHAPES for train in (True, False)),
]


@pytest.mark.parametrize("device, shape, train", CASES)
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_fused_matches_eager_on_each_device_and_precision(device, shape, train, precision, record_property):
    model = shaped_model(shape, device)
    eager_out, eager_grads = run(model, "eager", train, precision)
    fused_out, fused_grads = run(model, "fused", train, precision)
    assert fused_grads.keys() == eager_grads.keys()
    output = float((fused_out - eager_out).abs().max() / eager_out.abs().max())
    scale = max(float(g.abs().max()) for g in eager_grads.values())
    gradient = max(float((fused_grads[n] - eager_grads[n]).abs().max()) for n in eager_grads) / scale
    record_property("output_deviation", output)
    record_property("gradient_deviation", gradient)
    assert torch.isfinite(fused_out).all() and scale > 0
    assert output <= TOLERANCE[precision] and gradient <= TOLERANCE[precision], (output, gradient)


def test_switching_changes_only_the_class():
    model = wavlm()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert set_wavlm_attention(model, "fused") == TINY_WAVLM["num_hidden_layers"]
    attentions = [m for m in model.modules() if isinstance(m, WavLMAttention)]
    assert all(type(m) is FusedWavLMAttention for m in attentions)
    assert model.state_dict().keys() == state.keys()
    set_wavlm_attention(model, "eager")
    assert all(type(m) is WavLMAttention for m in attentions)


def test_attention_dropout_applies_in_training_only():
    model = wavlm(**{**NO_DROPOUT, "attention_dropout": 0.5})
    x, mask = padded_batch()
    set_wavlm_attention(model, "fused")
    model.train()
    with torch.no_grad():
        first, second = (model(x, attention_mask=mask).last_hidden_state for _ in range(2))
        assert not torch.allclose(first, second)
        model.eval()
        torch.testing.assert_close(
            model(x, attention_mask=mask).last_hidden_state, model(x, attention_mask=mask).last_hidden_state
        )
