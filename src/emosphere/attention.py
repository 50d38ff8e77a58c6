"""WavLM self-attention on fused kernels.

transformers' ``WavLMAttention`` runs ``F.multi_head_attention_forward`` with
``need_weights=True``: every (frames x frames) score, softmax and dropout
tensor is materialised, and the weights are averaged over heads for an output
nobody reads. :class:`FusedWavLMAttention` computes the same function with
``F.scaled_dot_product_attention`` (on CUDA its memory-efficient kernel,
which also gives the gradient of the additive mask). Off CUDA, in training
with attention dropout, SDPA has no fused kernel and its fallback is slower
than the three plain operations (scores, softmax with dropout, values), so
those run instead (they draw the same dropout masks as the eager path).

Contract (what it shares with the eager module, and what it changes):

* Same parameters and names (``q_proj``, ``k_proj``, ``v_proj``,
  ``out_proj``, ``gru_rel_pos_const``, ``gru_rel_pos_linear`` and, in layer 0,
  ``rel_attn_embed``), so a state dict loads into either.
* Same function: scores ``q k^T / sqrt(head_dim)`` plus the gated relative
  position bias ``gate(b, h, i) * bias(h, i, j)`` plus ``-inf`` on padded keys
  (``attention_mask`` 1/True on valid frames), softmax, attention dropout
  (``attention_dropout``, in training), values, output projection. Gradients
  reach every trainable parameter, the bias embedding and the gate included.
* Changed: the relative position bias handed from layer 0 to the next layers
  is ``(heads, frames, frames)``, shared by the batch (eager repeats it per
  utterance), and no attention weights are returned. So all attention modules
  of an encoder switch together: :func:`set_wavlm_attention`.

Encoders other than WavLM use transformers' own ``sdpa`` implementation for
"fused" (see ``EmoSphereSER.set_attention`` in :mod:`emosphere.model`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.wavlm.modeling_wavlm import WavLMAttention

from .config import Attention


class FusedWavLMAttention(WavLMAttention):
    """``WavLMAttention`` computed with ``scaled_dot_product_attention``; see the module docstring."""

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_bias: torch.Tensor | None = None,
        index: int = 0,
        **kwargs,
    ) -> tuple:
        batch, frames, dim = hidden_states.shape
        if position_bias is None:
            position_bias = self.compute_bias(frames, frames)  # (heads, frames, frames)

        def split_heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, frames, self.num_heads, self.head_dim).transpose(1, 2)

        # The gate of the relative position bias, from each head's slice of the input.
        projected = self.gru_rel_pos_linear(split_heads(hidden_states))
        gate_a, gate_b = torch.sigmoid(projected.view(batch, self.num_heads, frames, 2, 4).sum(-1)).chunk(2, dim=-1)
        gate = gate_a * (gate_b * self.gru_rel_pos_const - 1.0) + 2.0  # (batch, heads, frames, 1)
        q = split_heads(self.q_proj(hidden_states))
        k = split_heads(self.k_proj(hidden_states))
        v = split_heads(self.v_proj(hidden_states))
        # The additive mask (batch, heads, frames, frames), made in the scores' dtype (under autocast
        # the eager path casts it there too): no float32 copy of the largest tensor.
        bias = gate.to(q.dtype) * position_bias.to(q.dtype)
        if attention_mask is not None:
            bias = bias.masked_fill(attention_mask.ne(1)[:, None, None, :], float("-inf"))
        if self.training and self.dropout > 0 and q.device.type != "cuda":
            # Off CUDA, SDPA has no kernel with dropout, and its fallback is slower than this.
            scores = torch.baddbmm(
                bias.flatten(0, 1), (q * self.scaling).flatten(0, 1), k.flatten(0, 1).transpose(1, 2)
            )
            out = F.dropout(torch.softmax(scores, dim=-1), self.dropout).view_as(bias) @ v
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=bias, dropout_p=self.dropout if self.training else 0.0
            )
        # A copy, not .contiguous(): SDPA's output layout differs between kernels, and torch.export
        # records a view that its decomposition for ONNX cannot replay.
        out = out.transpose(1, 2).clone(memory_format=torch.contiguous_format).view(batch, frames, dim)
        return self.out_proj(out), None, position_bias


def set_wavlm_attention(model: nn.Module, attention: Attention) -> int:
    """Switch every WavLM attention module in ``model`` to ``attention``, in place; returns how many.

    Only the class changes (parameters, buffers and state dict stay), so the
    switch can be made at any time, on a trained model too.
    """
    cls = {"eager": WavLMAttention, "fused": FusedWavLMAttention}[attention]
    count = 0
    for module in model.modules():
        if isinstance(module, WavLMAttention):
            module.__class__ = cls
            count += 1
    return count
