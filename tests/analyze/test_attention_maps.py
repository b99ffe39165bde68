import pytest
import torch
import torch.nn.functional as F

from attention_zoo import build_mixer
from attention_zoo.mixers.gated import GatedAttentionUnit
from harness.analyze.attention_maps import AttentionMap, attention_map

# Small blocks / groups / windows so that a 21-token sequence crosses several of them.
CASES = {
    "vanilla": ("vanilla", {}),
    "vanilla_rope": ("vanilla", {"pos": "rope"}),
    "elu": ("elu", {"chunk_size": 4}),
    "elu_no_scaling": ("elu", {"normalize": False}),
    "performer": ("performer", {"n_features": 16}),
    "cosformer": ("cosformer", {}),
    "cosformer_max_len": ("cosformer", {"max_len": 32}),
    "norm_t2": ("norm_attention", {"chunk_size": 4}),
    "norm_t1": ("norm_attention", {"feature_map": "elu"}),
    "diag_t2": ("diag_attention", {"block_size": 8}),
    "diag_t1": ("diag_attention", {"block_size": 8, "inner": "relu", "norm": "srmsnorm"}),
    "flash_quad": ("flash_quad", {"qk_dim": 8}),
    "flash": ("flash", {"qk_dim": 8, "group_size": 8}),
    "ls": ("ls", {"window_size": 8, "n_landmarks": 3, "segment_landmarks": 2}),
}
D, H, N = 16, 2, 21


def reconstruct(mixer, x, amap, padding_mask):
    """The mixer's output rebuilt from ``weights @ values`` and the mixer's own tail."""
    core = torch.matmul(amap.weights, amap.values)
    if isinstance(mixer, GatedAttentionUnit):
        u, _ = F.silu(mixer.to_uv(x)).chunk(2, dim=-1)
        out = mixer.out_proj(u * core[:, 0])
    else:
        out = core.transpose(1, 2).flatten(-2)
        if mixer.output_norm is not None:
            out = mixer.output_norm(out, padding_mask)
        out = mixer.out_proj(out)
    return out if padding_mask is None else out.masked_fill(padding_mask[..., None], 0.0)


def build(case, causal):
    name, knobs = CASES[case]
    torch.manual_seed(0)
    return build_mixer(name, D, H, causal, **knobs).double().eval()


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidir"])
@pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("case", list(CASES))
def test_map_reproduces_output_and_rows_sum_to_one(case, causal, padded):
    mixer = build(case, causal)
    x = torch.randn(2, N, D, dtype=torch.float64)
    padding_mask = None
    if padded:
        padding_mask = torch.zeros(2, N, dtype=torch.bool)
        padding_mask[1, 15:] = True
    amap = attention_map(mixer, x, padding_mask)
    with torch.no_grad():
        expected = mixer(x, padding_mask)
        got = reconstruct(mixer, x, amap, padding_mask)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)

    probs = amap.probs
    assert probs.shape == (2, amap.weights.shape[1], N, N)
    assert (probs >= 0).all()
    real = torch.ones(2, N, dtype=torch.bool) if padding_mask is None else ~padding_mask
    row_sums = probs.sum(-1)[real[:, None, :].expand_as(probs[..., 0])]
    torch.testing.assert_close(row_sums, torch.ones_like(row_sums))
    key_is_pad = ~real[:, None, None, :].expand_as(probs) & real[:, None, :, None]
    assert not probs[key_is_pad].any(), "padded keys must get no attention"
    if causal:
        assert probs.triu(1).abs().max() == 0, "a causal map must not look ahead"


def test_diag_map_is_zero_across_blocks():
    probs = attention_map(build("diag_t2", False), torch.randn(1, N, D, dtype=torch.float64)).probs
    block = torch.arange(N) // 8
    assert probs[..., block[:, None] != block[None, :]].abs().max() == 0


def test_left_padding_is_refused():
    with pytest.raises(ValueError, match="right-padded"):
        attention_map(build("vanilla", True), torch.randn(1, 4, D), torch.tensor([[True, False, False, False]]))


def test_a_mixer_without_a_map_is_refused_naming_the_method():
    with pytest.raises(ValueError, match=r"Linear: it has no method attention_map\(x, key_valid\)"):
        attention_map(torch.nn.Linear(4, 4), torch.randn(1, 3, 4))


def test_a_mixer_brings_its_own_map():
    """The materialiser is the mixer's method, so a plugin's mixer can provide one."""
    class Uniform(torch.nn.Module):
        def attention_map(self, x, key_valid):
            n = x.shape[1]
            probs = torch.full((x.shape[0], 1, n, n), 1 / n)
            return AttentionMap(probs, x[:, None], probs, "uniform")

    found = attention_map(Uniform(), torch.randn(2, 5, 4))
    assert found.kind == "uniform" and found.probs.shape == (2, 1, 5, 5)
