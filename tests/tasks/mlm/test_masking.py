"""RoBERTa masking: 15% of the maskable tokens, 80/10/10, specials never, exact per-sequence counts."""
import torch

from tasks.base import IGNORE_INDEX
from tasks.mlm.masking import MaskingConfig, mask_tokens

MASK, N_SPECIAL, VOCAB = 4, 5, 1000


def draw(seed=0, batch=64, length=512):
    tokens = torch.randint(N_SPECIAL, VOCAB, (batch, length), generator=torch.Generator().manual_seed(99))
    tokens[:, 0], tokens[:, -1] = 0, 2  # <s> ... </s>
    tokens[: batch // 2, length // 2 :] = 1  # padding in half the rows
    maskable = tokens >= N_SPECIAL
    inputs, targets = mask_tokens(tokens, maskable, MaskingConfig(), MASK, N_SPECIAL, VOCAB,
                                  torch.Generator().manual_seed(seed))
    return tokens, maskable, inputs, targets


def test_shares_of_masked_random_and_unchanged():
    tokens, maskable, inputs, targets = draw()
    picked = targets != IGNORE_INDEX
    assert abs(picked.sum() / maskable.sum() - 0.15) < 0.005
    assert torch.equal(targets[picked], tokens[picked])
    n = picked.sum()
    masked = (inputs == MASK) & picked
    unchanged = (inputs == tokens) & picked
    random = picked & ~masked & ~unchanged
    assert abs(masked.sum() / n - 0.8) < 0.02
    assert abs(random.sum() / n - 0.1) < 0.015 and abs(unchanged.sum() / n - 0.1) < 0.015
    assert (inputs[random] >= N_SPECIAL).all() and (inputs[random] < VOCAB).all()
    assert torch.equal(inputs[~picked], tokens[~picked])  # nothing else changes


def test_specials_and_padding_are_never_picked_and_counts_are_exact():
    tokens, maskable, _, targets = draw(seed=1)
    picked = targets != IGNORE_INDEX
    assert not (picked & ~maskable).any()
    expected = 0.15 * maskable.sum(dim=1)
    counts = picked.sum(dim=1)
    assert ((counts == expected.floor()) | (counts == expected.floor() + 1)).all()


def test_deterministic_by_generator():
    assert torch.equal(draw(seed=3)[2], draw(seed=3)[2])
    assert not torch.equal(draw(seed=3)[2], draw(seed=4)[2])
