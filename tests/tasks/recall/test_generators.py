"""The recall generators against their definitions (docs/recall.md): layout, answers, gaps, splits, seeds."""
from __future__ import annotations

import numpy as np
import pytest

from tasks.recall import mqar, noisy, selective_copy
from tasks.recall.data import generate_splits
from tasks.recall.sampling import IGNORE_INDEX
from tasks.recall.specs import SPECS


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ------------------------------------------------------------------------------------------------- MQAR
@pytest.mark.parametrize("filler", mqar.FILLERS)
@pytest.mark.parametrize("passes", [1, 2])
def test_mqar_layout_and_answers(filler, passes):
    p = mqar.MQARParams(vocab_size=200, seq_len=64, num_kv_pairs=8, power_a=0.01, num_passes=passes, filler=filler)
    inputs, targets = mqar.generate(p, 300, rng())
    half, context = p.vocab_size // 2, p.context_len
    assert inputs.shape == targets.shape == (300, 64) and inputs.min() >= 0 and inputs.max() < p.vocab_size
    for x, y in zip(inputs, targets):
        keys, values = x[0 : 2 * p.num_kv_pairs : 2], x[1 : 2 * p.num_kv_pairs : 2]
        assert len(set(keys)) == len(set(values)) == p.num_kv_pairs  # distinct keys, distinct values
        assert ((1 <= keys) & (keys < half)).all() and ((half <= values) & (values < p.vocab_size)).all()
        assert (x[:context] == np.tile(x[: 2 * p.num_kv_pairs], passes)).all()
        answers = np.flatnonzero(y != IGNORE_INDEX)
        assert len(answers) == p.num_kv_pairs and (answers >= context).all() and ((answers - context) % 2 == 0).all()
        assert sorted(x[answers]) == sorted(keys)  # each key queried exactly once, after the context
        assert all(y[i] == dict(zip(keys, values))[x[i]] for i in answers)  # the queried key's value
        rest = np.setdiff1d(np.arange(context, p.seq_len), answers)
        if filler == "zero":
            assert (x[rest] == 0).all()
        elif filler == "non_keys":  # no key token after the context but the queries
            assert not ((1 <= x[rest]) & (x[rest] < half)).any()


def test_mqar_random_filler_covers_the_vocabulary():
    """Zoology's filler is uniform over [0, V): it includes key tokens (zoology issue 29), and values."""
    p = mqar.MQARParams(vocab_size=100, seq_len=64, num_kv_pairs=4)
    inputs, targets = mqar.generate(p, 200, rng())
    filler = inputs[:, p.context_len :][targets[:, p.context_len :] == IGNORE_INDEX]
    assert len(np.unique(filler)) == 100


@pytest.mark.parametrize("power_a", [0.01, 0.5, 1.0])
def test_mqar_gap_distribution_follows_power_a(power_a):
    """With one pair the query's offset index i is drawn with probability ∝ a*(i+1)^(a-1) (Zoology's p)."""
    p = mqar.MQARParams(vocab_size=256, seq_len=42, num_kv_pairs=1, power_a=power_a, filler="zero")
    n = 20_000
    _, targets = mqar.generate(p, n, rng())
    index = (np.argmax(targets != IGNORE_INDEX, axis=1) - p.context_len) // 2
    observed = np.bincount(index, minlength=20) / n
    expected = p.gap_weights() / p.gap_weights().sum()
    assert 0.5 * np.abs(observed - expected).sum() < 0.02  # total variation
    if power_a < 1:
        assert observed[0] > observed[1] > observed[5] > observed[19]


def test_mqar_gaps_are_successive_draws_as_zoologys():
    """Several pairs: key j's offset is the j-th of successive draws without replacement, distributed as the
    numpy.random.choice(space, N, replace=False, p=p) that Zoology calls (early keys tend to be asked early)."""
    p = mqar.MQARParams(vocab_size=256, seq_len=64, num_kv_pairs=4, power_a=0.01, filler="zero")
    n, space = 8000, 28
    inputs, _ = mqar.generate(p, n, rng())
    ours = np.stack([np.argmax(inputs[:, p.context_len :] == inputs[:, 2 * j : 2 * j + 1], axis=1) // 2
                     for j in range(4)], axis=1)
    weights = p.gap_weights()
    np.random.seed(0)
    zoology = np.stack([np.random.choice(space, size=4, replace=False, p=weights / weights.sum()) for _ in range(n)])
    assert (np.sort(ours, axis=1)[:, 1:] > np.sort(ours, axis=1)[:, :-1]).all()  # distinct offsets
    assert np.abs(ours.mean(0) - zoology.mean(0)).max() < 0.35  # each draw's mean offset (about 6.3 to 8.1)
    assert abs((ours[:, 0] < ours[:, 3]).mean() - (zoology[:, 0] < zoology[:, 3]).mean()) < 0.03
    first = np.bincount(ours[:, 0], minlength=space) / n
    assert 0.5 * np.abs(first - np.bincount(zoology[:, 0], minlength=space) / n).sum() < 0.04


def test_mqar_checks_name_the_key():
    with pytest.raises(ValueError, match=r"task.filler='noise' is not valid; valid choices: \['random'"):
        mqar.MQARParams(filler="noise")
    with pytest.raises(ValueError, match="task.seq_len=16 is too short for task.num_kv_pairs=8"):
        mqar.MQARParams(vocab_size=100, seq_len=16, num_kv_pairs=8)
    with pytest.raises(ValueError, match="task.vocab_size=64 must exceed task.seq_len=64"):
        mqar.MQARParams(vocab_size=64, seq_len=64)
    with pytest.raises(ValueError, match="task.seq_len=33 must be even"):
        mqar.MQARParams(seq_len=33)
    with pytest.raises(ValueError, match="task.power_a=0.0 must be positive"):
        mqar.MQARParams(power_a=0.0)


# ------------------------------------------------------------------------------------------ noisy recall
def test_noisy_recall_layout_and_answers():
    p = noisy.NoisyRecallParams(vocab_size=32, seq_len=64, noise_vocab_size=16, frac_noise=0.3)
    inputs, targets = noisy.generate(p, 400, rng())
    assert inputs.shape == targets.shape == (400, 63)  # the model reads seq_len - 1 tokens
    plain = p.vocab_size - p.noise_vocab_size
    noise_slots = 0
    for x, y in zip(inputs, targets):
        sequence = np.append(x, y[-1])  # the last target is the probe's value
        pairs = sequence.reshape(-1, 2)
        is_noise = pairs[:, 0] >= plain
        noise_slots += is_noise[:-1].sum()
        assert ((pairs[is_noise] >= plain) & (pairs[is_noise] < p.vocab_size)).all()  # both tokens noise
        assert not is_noise[-1] and (~is_noise[:-1]).any()  # a probe, and at least one pair before it
        value_of: dict[int, int] = {}
        expected = np.full(len(sequence), IGNORE_INDEX)
        for slot, (key, value) in enumerate(pairs):
            if is_noise[slot]:
                continue
            assert key < plain // 2 <= value < plain
            if key in value_of or slot == len(pairs) - 1:
                expected[2 * slot + 1] = value
            assert value_of.setdefault(key, value) == value  # a key keeps its value within a sequence
        assert pairs[-1, 0] in {k for k, v in value_of.items()}  # the probe asks a presented key
        assert (y == expected[1:]).all()  # answers: the values of repeated keys and of the probe, nothing else
    assert abs(noise_slots / (400 * 31) - 0.3) < 0.03


def test_noisy_recall_without_noise_is_in_context_recall():
    p = noisy.NoisyRecallParams(vocab_size=16, seq_len=32, noise_vocab_size=0, frac_noise=0.0)
    inputs, _ = noisy.generate(p, 50, rng())
    assert inputs.max() < 16
    with pytest.raises(ValueError, match="task.frac_noise=0.2 needs noise tokens"):
        noisy.NoisyRecallParams(noise_vocab_size=0, frac_noise=0.2)
    with pytest.raises(ValueError, match=r"task.train_on='most' is not valid; valid choices: \['all', 'answers'\]"):
        noisy.NoisyRecallParams(train_on="most")


# ------------------------------------------------------------------------------------------ selective copy
def test_selective_copy_layout_and_answers():
    p = selective_copy.SelectiveCopyParams(vocab_size=10, seq_len=64, num_tokens_to_copy=8)
    inputs, targets = selective_copy.generate(p, 300, rng())
    blank, marker, copies = 8, 9, 8
    for x, y in zip(inputs, targets):
        head = x[: 64 - copies - 1]
        assert x[64 - copies - 1] == marker and (x[64 - copies :] == blank).all() and marker not in head
        content = head[head != blank]
        assert len(content) == copies and head[-1] != blank  # MAD never scatters a blank after the last token
        assert (y[: 64 - copies] == IGNORE_INDEX).all() and (y[64 - copies :] == content).all()
    with pytest.raises(ValueError, match="task.seq_len=17 must exceed 2 \\* task.num_tokens_to_copy \\+ 1 = 17"):
        selective_copy.SelectiveCopyParams(seq_len=17, num_tokens_to_copy=8)


# ---------------------------------------------------------------------------------------------- splits
SMALL = {
    "mqar": mqar.MQARParams(vocab_size=64, seq_len=32, num_kv_pairs=4),
    "noisy": noisy.NoisyRecallParams(seq_len=32),
    "selective_copy": selective_copy.SelectiveCopyParams(seq_len=40, num_tokens_to_copy=8),
}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_splits_are_deterministic_by_seed(name):
    sizes = {"train": 50, "valid": 10, "test": 10}
    first, again = (generate_splits(SPECS[name], SMALL[name], sizes, seed=3) for _ in range(2))
    other = generate_splits(SPECS[name], SMALL[name], sizes, seed=4)
    for split in sizes:
        assert first[split]["inputs"].equal(again[split]["inputs"]) and first[split]["targets"].equal(
            again[split]["targets"])
        assert not first[split]["inputs"].equal(other[split]["inputs"])
    bigger = generate_splits(SPECS[name], SMALL[name], {**sizes, "train": 60}, seed=3)
    for split in ("valid", "test"):  # each split its own stream: more training examples leave them as they were
        assert bigger[split]["inputs"].equal(first[split]["inputs"])


def test_no_evaluation_example_is_a_training_example():
    """A space of 12 sequences (3 keys x 4 values, one query offset, zero filler): the evaluation splits still
    hold none of the training sequences, nor each other's."""
    p = mqar.MQARParams(vocab_size=8, seq_len=4, num_kv_pairs=1, filler="zero")
    splits = generate_splits(SPECS["mqar"], p, {"train": 6, "valid": 2, "test": 2}, seed=0)
    rows = {split: {tuple(r) for r in data["inputs"].tolist()} for split, data in splits.items()}
    assert len(rows["valid"]) == 2 and len(rows["test"]) == 2
    assert not rows["train"] & rows["valid"] and not rows["train"] & rows["test"] and not rows["valid"] & rows["test"]
    with pytest.raises(ValueError, match="only 0 of task.valid_examples=1 valid examples differ from the training"):
        generate_splits(SPECS["mqar"], p, {"train": 100, "valid": 1, "test": 8}, seed=0)
