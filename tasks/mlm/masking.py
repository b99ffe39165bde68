"""RoBERTa's masking: pick 15% of the maskable tokens of each sequence; of those, 80% become ``<mask>``,
10% a random token, 10% stay as they are; every picked token is a target.

As in fairseq's ``MaskTokensDataset``, a sequence of ``n`` maskable tokens gets exactly
``int(mask_prob * n + u)`` targets (``u`` uniform in [0, 1): the expected count is ``mask_prob * n``);
special tokens (``<s>``, ``</s>``, padding) are never picked; random tokens are drawn uniformly from the
non-special vocabulary.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from tasks.base import IGNORE_INDEX


@dataclass(frozen=True)
class MaskingConfig:
    mask_prob: float = 0.15
    mask_token_prob: float = 0.8
    random_token_prob: float = 0.1

    def __post_init__(self) -> None:
        if not 0 < self.mask_prob < 1:
            raise ValueError(f"task.mask_prob={self.mask_prob} must be in (0, 1)")
        if self.mask_token_prob < 0 or self.random_token_prob < 0 or self.mask_token_prob + self.random_token_prob > 1:
            raise ValueError(f"task.mask_token_prob={self.mask_token_prob} and task.random_token_prob="
                             f"{self.random_token_prob} must be non-negative with a sum of at most 1")


def mask_tokens(
    tokens: torch.Tensor, maskable: torch.Tensor, cfg: MaskingConfig, mask_id: int, n_special: int, vocab_size: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``tokens[B, N]``, ``maskable[B, N]`` bool -> (inputs with the corruption, targets: the original token
    where picked, ``IGNORE_INDEX`` elsewhere). Random ids are drawn from ``[n_special, vocab_size)``."""
    B, N = tokens.shape
    n_maskable = maskable.sum(dim=1)
    counts = (cfg.mask_prob * n_maskable + torch.rand(B, generator=generator)).long().clamp(max=n_maskable)
    scores = torch.rand(B, N, generator=generator).masked_fill(~maskable, 2.0)  # unmaskable sort last
    rank = scores.argsort(dim=1).argsort(dim=1)
    picked = rank < counts[:, None]
    targets = torch.where(picked, tokens, torch.full_like(tokens, IGNORE_INDEX))
    u = torch.rand(B, N, generator=generator)
    to_mask = picked & (u < cfg.mask_token_prob)
    to_random = picked & (u >= cfg.mask_token_prob) & (u < cfg.mask_token_prob + cfg.random_token_prob)
    random_ids = torch.randint(n_special, vocab_size, (B, N), generator=generator)
    inputs = torch.where(to_mask, torch.full_like(tokens, mask_id), tokens)
    inputs = torch.where(to_random, random_ids, inputs)
    return inputs, targets
