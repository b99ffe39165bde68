import pytest
import torch

from attention_zoo import build_backbone
from harness.analyze.capture import visiting_attention
from harness.analyze.locality import (
    DEFAULT_RATIOS,
    LocalityCurves,
    locally_accumulated,
    neighbourhood,
    uniform_curve,
)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("size", [0, 1, 2, 5, 6, 13])
def test_neighbourhood_holds_the_stated_tokens(causal, size):
    n = 13
    start, end = neighbourhood(n, size, causal)
    for i in range(n):
        s, e = int(start[i]), int(end[i])
        assert 0 <= s <= e <= n
        if causal:
            assert e == i + 1 and e - s == min(size, i + 1)  # the `size` most recent tokens, i included
        else:
            assert e - s == size  # always exactly `size` tokens, shifted inside the sequence at the edges
            if size:
                assert s <= i < e
                assert abs((i - s) - (e - 1 - i)) <= 1 or s == 0 or e == n  # centred unless at an edge


def random_attention(n, causal, heads=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, heads, n, n, generator=g) * 3
    if causal:
        logits = logits.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), -torch.inf)
    return torch.softmax(logits, dim=-1)


@pytest.mark.parametrize("causal", [True, False])
def test_curve_is_monotone_from_zero_to_one(causal):
    curve = locally_accumulated(random_attention(37, causal), DEFAULT_RATIOS, causal)
    assert curve[0] == 0
    assert torch.all(curve[1:] >= curve[:-1] - 1e-7)
    assert curve[-1] == pytest.approx(1.0, abs=1e-6)


def test_known_curves():
    n, ratios = 20, [0.0, 0.25, 0.5, 1.0]
    uniform = torch.full((1, 1, n, n), 1.0 / n)
    assert locally_accumulated(uniform, ratios, False).tolist() == pytest.approx([0.0, 0.25, 0.5, 1.0])
    identity = torch.eye(n)[None, None]
    assert locally_accumulated(identity, ratios, True).tolist() == pytest.approx([0.0, 1.0, 1.0, 1.0])
    causal_uniform = torch.ones(n, n).tril()
    causal_uniform = (causal_uniform / causal_uniform.sum(-1, keepdim=True))[None, None]
    expected = sum(min(5, i + 1) / (i + 1) for i in range(n)) / n  # r = 0.25: the 5 most recent tokens
    assert float(locally_accumulated(causal_uniform, [0.25], True)[0]) == pytest.approx(expected)


def test_invalid_ratio_names_the_range():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        LocalityCurves([0.5, 1.5])


@pytest.mark.parametrize("attention", ["vanilla", "transnormer_t2", "elu"])
def test_model_curves_per_layer_and_overall(attention):
    torch.manual_seed(0)
    knobs = {"block_size": 8} if attention == "transnormer_t2" else {}
    backbone = build_backbone({"name": attention, **knobs}, dict(d_model=16, n_layers=2, n_heads=2, max_len=64))
    curves = LocalityCurves([0.0, 0.1, 0.5, 1.0])
    padding_mask = torch.zeros(2, 30, dtype=torch.bool)
    padding_mask[1, 24:] = True
    with visiting_attention(backbone, curves):
        backbone(torch.randn(2, 30, 16), padding_mask)
    rows = curves.rows()
    assert {row["layer"] for row in rows} == {0, 1, "all", "uniform"}
    for layer in (0, 1, "all", "uniform"):
        scores = [row["score"] for row in rows if row["layer"] == layer]
        assert scores[0] == 0 and scores[-1] == pytest.approx(1.0, abs=1e-5)
        assert all(b >= a - 1e-6 for a, b in zip(scores, scores[1:]))
    assert backbone.training  # the mode is restored


@pytest.mark.parametrize("causal", [True, False])
def test_uniform_reference_matches_uniform_attention(causal):
    n, ratios = 17, [0.0, 0.2, 0.5, 0.9, 1.0]
    allowed = torch.ones(n, n).tril() if causal else torch.ones(n, n)
    uniform = (allowed / allowed.sum(-1, keepdim=True))[None, None]
    torch.testing.assert_close(uniform_curve(n, ratios, causal), locally_accumulated(uniform, ratios, causal))
