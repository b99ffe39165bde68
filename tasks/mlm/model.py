"""RoBERTa-style models around an ``attention_zoo`` backbone: the encoder (token embeddings, learned absolute
positions, embedding LayerNorm, a bidirectional backbone), the masked-LM head and the sentence(-pair) head.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attention_zoo.positional import build_absolute_positional


class Encoder(nn.Module):
    """``tokens[B, N]`` -> hidden states ``[B, N, D]``: LayerNorm(embed(tokens) * scale + positions), then the
    backbone (built without positions of its own: they are added here, before the embedding norm)."""

    def __init__(self, backbone: nn.Module, vocab_size: int, pad_id: int, positional: str, max_len: int,
                 scale_embeddings: bool = False):
        super().__init__()
        d_model = backbone.config.d_model
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        nn.init.normal_(self.embed.weight, std=0.02)
        with torch.no_grad():
            self.embed.weight[pad_id].zero_()
        self.embed_scale = d_model**0.5 if scale_embeddings else 1.0
        self.positions = build_absolute_positional(positional, d_model, max_len)
        self.embed_norm = nn.LayerNorm(d_model)
        self.backbone = backbone

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embed_norm(self.positions(self.embed(tokens) * self.embed_scale))
        return self.backbone(x, padding_mask)


class MaskedLanguageModel(nn.Module):
    """Encoder + RoBERTa's LM head (dense, GELU, LayerNorm, output tied to the embeddings, bias), applied only
    where ``predict_mask`` is set: returns logits ``[M, V]`` for the M picked positions (row-major order)."""

    def __init__(self, encoder: Encoder):
        super().__init__()
        d_model, vocab_size = encoder.embed.embedding_dim, encoder.embed.num_embeddings
        self.encoder = encoder
        self.dense = nn.Linear(d_model, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, tokens: torch.Tensor, predict_mask: torch.Tensor,
                padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.encoder(tokens, padding_mask)[predict_mask]
        return F.linear(self.norm(F.gelu(self.dense(hidden))), self.encoder.embed.weight, self.bias)


class SentenceClassifier(nn.Module):
    """Encoder + RoBERTa's classification head on the first (``<s>``) token: dropout, dense, tanh, dropout,
    projection to ``n_outputs`` (classes, or 1 for regression)."""

    def __init__(self, encoder: Encoder, n_outputs: int, dropout: float = 0.1):
        super().__init__()
        d_model = encoder.embed.embedding_dim
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, n_outputs)

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        first = self.encoder(tokens, padding_mask)[:, 0]
        return self.out_proj(self.dropout(torch.tanh(self.dense(self.dropout(first)))))
