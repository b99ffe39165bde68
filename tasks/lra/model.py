"""LRA models: token embeddings + an ``attention_zoo`` backbone + pooling + an MLP head.

Pooling (``task.pooling``): ``mean`` over the real tokens, ``cls`` (a learned vector prepended to the
sequence, its final state), or ``last`` (the final state of the last real token). Retrieval is a dual
encoder: both documents go through the same encoder and the head sees [u, v, u * v, u - v] (LRA's
AAN setup). The head is LRA's: Linear - ReLU - Linear.
"""
from __future__ import annotations

import torch
from torch import nn

POOLINGS = ("mean", "cls", "last")


def pool(hidden: torch.Tensor, padding_mask: torch.Tensor | None, how: str) -> torch.Tensor:
    """``hidden[B, N, D]`` -> ``[B, D]``; ``padding_mask[B, N]`` True at padding (right-padded rows)."""
    if how == "cls":
        return hidden[:, 0]
    if padding_mask is None:
        return hidden.mean(dim=1) if how == "mean" else hidden[:, -1]
    real = (~padding_mask).to(hidden.dtype)
    if how == "mean":
        return (hidden * real.unsqueeze(-1)).sum(dim=1) / real.sum(dim=1, keepdim=True).clamp_min(1.0)
    last = real.sum(dim=1).long().clamp_min(1) - 1
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


class SequenceEncoder(nn.Module):
    """``tokens[B, N]`` (0 = padding) -> pooled ``[B, D]``."""

    def __init__(self, backbone: nn.Module, vocab_size: int, pooling: str, scale_embeddings: bool = False):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"task.pooling={pooling!r} is not valid; valid choices: {list(POOLINGS)}")
        d_model = backbone.config.d_model
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=0)
        nn.init.normal_(self.embed.weight, std=d_model**-0.5)
        with torch.no_grad():
            self.embed.weight[0].zero_()
        self.embed_scale = d_model**0.5 if scale_embeddings else 1.0
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model)) if pooling == "cls" else None
        self.pooling, self.backbone = pooling, backbone

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embed(tokens) * self.embed_scale
        if self.cls is not None:
            x = torch.cat([self.cls.expand(x.shape[0], 1, -1).to(x.dtype), x], dim=1)
            if padding_mask is not None:
                padding_mask = torch.cat([padding_mask.new_zeros(x.shape[0], 1), padding_mask], dim=1)
        return pool(self.backbone(x, padding_mask), padding_mask, self.pooling)


def mlp_head(d_in: int, hidden: int, n_classes: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))


class Classifier(nn.Module):
    """One sequence -> class logits ``[B, C]``."""

    def __init__(self, encoder: SequenceEncoder, hidden: int, n_classes: int):
        super().__init__()
        self.encoder, self.head = encoder, mlp_head(encoder.embed.embedding_dim, hidden, n_classes)

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.encoder(tokens, padding_mask))


class DualEncoderClassifier(nn.Module):
    """A pair ``tokens[B, 2, N]`` -> logits ``[B, C]`` from [u, v, u * v, u - v] of the shared encoder."""

    def __init__(self, encoder: SequenceEncoder, hidden: int, n_classes: int):
        super().__init__()
        self.encoder, self.head = encoder, mlp_head(4 * encoder.embed.embedding_dim, hidden, n_classes)

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        batch = tokens.shape[0]
        mask = None if padding_mask is None else padding_mask.flatten(0, 1)
        u, v = self.encoder(tokens.flatten(0, 1), mask).view(batch, 2, -1).unbind(dim=1)
        return self.head(torch.cat([u, v, u * v, u - v], dim=-1))
