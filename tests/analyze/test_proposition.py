import pytest
import torch

from attention_zoo import build_backbone, build_mixer
from harness.analyze.attention_maps import attention_map
from harness.analyze.capture import visiting_attention
from harness.analyze.proposition import JacobianCollector, LogHistogram, jacobian_magnitudes


def autograd_jacobian(scores, allowed, family):
    def attention(s):
        f = torch.exp(s - s[allowed].max()) if family == "softmax" else s
        f = f * allowed
        return f / f.sum()

    jac = torch.autograd.functional.jacobian(attention, scores)
    return jac[allowed][:, allowed].abs().flatten()


@pytest.mark.parametrize("family", ["softmax", "kernel"])
def test_closed_form_matches_autograd(family):
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(7, generator=g, dtype=torch.float64)
    if family == "kernel":
        scores = scores.abs() * 0.3
    allowed = torch.tensor([True, True, False, True, True, True, False])
    f = torch.exp(scores) * allowed if family == "softmax" else scores * allowed
    probs = f / f.sum()
    mass = f.sum()[None] if family == "kernel" else None
    got = jacobian_magnitudes(probs[None], allowed[None], family, mass)
    torch.testing.assert_close(got, autograd_jacobian(scores, allowed, family))


def test_softmax_bound_holds_and_is_reached():
    g = torch.Generator().manual_seed(1)
    probs = torch.softmax(torch.randn(64, 50, generator=g) * 10, dim=-1)
    allowed = torch.ones_like(probs, dtype=torch.bool)
    assert jacobian_magnitudes(probs, allowed, "softmax").max() <= 0.25
    half = torch.tensor([[0.5, 0.5]])
    assert jacobian_magnitudes(half, torch.ones_like(half, dtype=torch.bool), "softmax").max() == 0.25


def test_kernel_is_unbounded_as_the_mass_vanishes():
    probs = torch.tensor([[0.5, 0.5]])
    allowed = torch.ones_like(probs, dtype=torch.bool)
    assert jacobian_magnitudes(probs, allowed, "kernel", torch.tensor([1e-3])).max() == pytest.approx(500.0)


def test_histogram_counts_and_quantiles():
    hist = LogHistogram(lo=-3, hi=3, per_decade=1)
    hist.add(torch.tensor([0.0, 0.005, 0.05, 0.5, 0.5, 5.0, 5e4]))
    assert (hist.total, hist.zeros, hist.overflow, hist.max) == (7, 1, 1, 5e4)
    assert hist.quantile(0.5) == pytest.approx(1.0)  # the 4th value (0.5) lies in [0.1, 1)
    assert hist.fraction_above(0.25) == pytest.approx(4 / 7)


def test_performer_row_mass_is_the_unstabilised_denominator():
    torch.manual_seed(0)
    mixer = build_mixer("performer", 8, 2, causal=True, n_features=16).eval()
    x = torch.randn(1, 9, 8) * 3
    amap = attention_map(mixer, x)
    q, k = (mixer.split_heads(p(x)).double() * 4**-0.25 for p in (mixer.q_proj, mixer.k_proj))
    w = mixer.projection.double()

    def phi(t):
        return torch.exp(t @ w.t() - 0.5 * t.pow(2).sum(-1, keepdim=True)) / 16**0.5

    true_mass = (phi(q) @ phi(k).transpose(-1, -2)).tril().sum(-1)
    torch.testing.assert_close(amap.row_mass, true_mass, rtol=1e-4, atol=0)


def test_collector_on_models():
    torch.manual_seed(0)
    collector = JacobianCollector(rows_per_map=16)
    for attention in ("vanilla", "elu", "norm_attention"):
        backbone = build_backbone(attention, dict(d_model=16, n_layers=2, n_heads=2, max_len=64))
        with visiting_attention(backbone, collector):
            backbone(torch.randn(2, 24, 16))
    summary = {row["family"]: row for row in collector.summary_rows()}
    assert set(summary) == {"softmax", "kernel"}  # NormAttention has no denominator: not part of the check
    assert summary["softmax"]["bound_1/4_holds"] and summary["softmax"]["max"] <= 0.25
    assert summary["kernel"]["entries"] > 0
    counts = {}
    for row in collector.histogram_rows():
        counts[row["family"]] = counts.get(row["family"], 0) + row["count"]
    assert counts == {family: summary[family]["entries"] for family in summary}
