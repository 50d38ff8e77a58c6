import pytest
import torch
from conftest import TINY_WAVLM
from transformers import AutoConfig, AutoModel
from transformers.models.wavlm.modeling_wavlm import WavLMAttention

from emosphere.attention import FusedWavLMAttention, set_wavlm_attention

NO_DROPOUT = {"hidden_dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0, "feat_proj_dropout": 0.0}
LENGTHS = [16000, 9000, 4000, 400]


def wavlm(**changes):
    values = {**TINY_WAVLM, **changes}
    torch.manual_seed(0)
    return AutoModel.from_config(AutoConfig.for_model(values.pop("model_type"), **values))


def padded_batch():
    torch.manual_seed(1)
    x = torch.zeros(len(LENGTHS), max(LENGTHS))
    for i, n in enumerate(LENGTHS):
        x[i, :n] = 0.1 * torch.randn(n)
    mask = (torch.arange(x.shape[1])[None, :] < torch.tensor(LENGTHS)[:, None]).long()
    return x, mask


def run(model, attention, train):
    set_wavlm_attention(model, attention)
    model.train(train)
    model.zero_grad()
    x, mask = padded_batch()
    torch.manual_seed(2)  # the same attention dropout masks, where there is dropout
    out = model(x, attention_mask=mask).last_hidden_state
    frames = model._get_feat_extract_output_lengths(torch.tensor(LENGTHS))
    valid = torch.arange(out.shape[1])[None, :, None] < frames[:, None, None]  # padded frames are never used
    (out * torch.linspace(-1, 1, out.numel()).view_as(out) * valid).sum().backward()
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
