"""The decayed linear attention op (attention_zoo/ops/decay.py) against the recurrence it stands for, token by
token in float64, and its stability under gates far stronger than training produces."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attention_zoo.ops.decay import causal_decayed_linear_attention, decayed_linear_attention

B, H, N, DK, DV = 2, 3, 45, 6, 5


def recurrence(q, k, v, g, state=None):
    """S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T, o_t = S_t^T q_t, one token at a time."""
    state = q.new_zeros(B, H, DK, DV) if state is None else state
    outputs = []
    for t in range(q.shape[2]):
        decay = torch.exp(g[:, :, t])
        decay = decay[..., None] if decay.dim() == 3 else decay[..., None, None]
        state = decay * state + k[:, :, t, :, None] * v[:, :, t, None, :]
        outputs.append(torch.einsum("bhd,bhde->bhe", q[:, :, t], state))
    return torch.stack(outputs, dim=2), state


def case(per_channel: bool, seed: int = 0, strength: float = 1.0):
    gen = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(B, H, N, DK, generator=gen, dtype=torch.float64) for _ in range(2))
    v = torch.randn(B, H, N, DV, generator=gen, dtype=torch.float64)
    shape = (B, H, N, DK) if per_channel else (B, H, N)
    g = F.logsigmoid(torch.randn(*shape, generator=gen, dtype=torch.float64) * strength)
    return q, k, v, g


@pytest.mark.parametrize("per_channel", [False, True], ids=["per-head", "per-channel"])
@pytest.mark.parametrize("chunk_size", [1, 7, 16, 64])
def test_causal_form_is_the_recurrence_and_continues_from_a_state(per_channel, chunk_size):
    q, k, v, g = case(per_channel)
    expected, expected_state = recurrence(q, k, v, g)
    out, state = causal_decayed_linear_attention(q, k, v, g, chunk_size=chunk_size)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(state, expected_state, rtol=1e-12, atol=1e-12)
    head, tail = slice(0, 19), slice(19, N)
    first, middle = causal_decayed_linear_attention(*(t[:, :, head] for t in (q, k, v, g)), chunk_size=chunk_size)
    second, _ = causal_decayed_linear_attention(*(t[:, :, tail] for t in (q, k, v, g)), chunk_size=chunk_size,
                                                initial_state=middle)
    torch.testing.assert_close(torch.cat([first, second], dim=2), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("per_channel", [False, True], ids=["per-head", "per-channel"])
def test_bidirectional_form_is_the_forward_plus_the_backward_recurrence(per_channel):
    """o_i sees key j through the decays of the tokens strictly after min(i, j), up to max(i, j)."""
    q, k, v, g = case(per_channel, seed=1)
    forward, _ = recurrence(q, k, v, g)
    flip = lambda t: t.flip(2)  # noqa: E731
    shifted = torch.cat([torch.zeros_like(g[:, :, :1]), flip(g)[:, :, :-1]], dim=2)
    backward, _ = recurrence(flip(q), flip(k), flip(v), shifted)
    expected = forward + flip(backward) - (q * k).sum(-1, keepdim=True) * v
    out = decayed_linear_attention(q, k, v, g, causal=False, chunk_size=16)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("per_channel", [False, True], ids=["per-head", "per-channel"])
def test_strong_gates_stay_finite_and_accurate_in_float32(per_channel):
    """Log-decays down to about -200 per token: every exponent the op takes is <= 0, so nothing overflows."""
    q, k, v, g = case(per_channel, seed=2, strength=200.0)
    expected, _ = recurrence(q, k, v, g)
    out, _ = causal_decayed_linear_attention(q.float(), k.float(), v.float(), g.float(), chunk_size=64)
    assert torch.isfinite(out).all()
    assert (out.double() - expected).abs().max() <= 1e-4 * expected.abs().max()


@pytest.mark.parametrize("per_channel", [False, True], ids=["per-head", "per-channel"])
def test_one_token_at_a_time_is_the_parallel_form(per_channel):
    """Decoding's path: a single token updates the state directly (no chunk padded around it)."""
    q, k, v, g = case(per_channel, seed=3)
    expected, expected_state = causal_decayed_linear_attention(q, k, v, g, chunk_size=16)
    state, outputs = None, []
    for t in range(N):
        out, state = causal_decayed_linear_attention(*(x[:, :, t : t + 1] for x in (q, k, v, g)), initial_state=state)
        outputs.append(out)
    torch.testing.assert_close(torch.cat(outputs, dim=2), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(state, expected_state, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
def test_q_and_k_shared_by_the_heads_equal_their_copies(causal):
    """Mamba-2's C and B: one head of q and k broadcast over the heads of v and g, as if copied into each."""
    q, k, v, g = case(False, seed=4)
    q, k = q[:, :1], k[:, :1]
    shared = decayed_linear_attention(q, k, v, g, causal=causal, chunk_size=16)
    copied = decayed_linear_attention(q.expand(-1, H, -1, -1), k.expand(-1, H, -1, -1), v, g, causal=causal,
                                      chunk_size=16)
    torch.testing.assert_close(shared, copied, rtol=1e-12, atol=1e-12)
    if causal:
        _, state = causal_decayed_linear_attention(q, k, v, g, chunk_size=16)
        out, _ = causal_decayed_linear_attention(q[:, :, :1], k[:, :, :1], v[:, :, :1], g[:, :, :1],
                                                 initial_state=state)
        assert out.shape == (B, H, 1, DV)


def test_a_strong_gate_later_changes_no_earlier_output_even_by_rounding():
    """Per-channel decays: each query row factorises or takes the materialised weights by the decays up to it alone,
    so gates far beyond factorising after position 30 leave the outputs before it equal to the bit (fp32), and the
    mixed chunk stays accurate."""
    q, k, v, g = case(True, seed=4)
    strong = g.clone()
    strong[:, :, 30:34] = -150.0
    expected, _ = recurrence(q, k, v, strong)
    q, k, v, g, strong = (t.float() for t in (q, k, v, g, strong))
    out, _ = causal_decayed_linear_attention(q, k, v, g, chunk_size=64)
    mixed, _ = causal_decayed_linear_attention(q, k, v, strong, chunk_size=64)
    assert torch.equal(mixed[:, :, :30], out[:, :, :30])
    assert (mixed.double() - expected).abs().max() <= 1e-4 * expected.abs().max()


@pytest.mark.parametrize("chunk_size", [64, 100])
@pytest.mark.parametrize("dtype, strength, tol", [(torch.float64, 40.0, 1e-12), (torch.float64, 400.0, 1e-12),
                                                  (torch.float32, 4.0, 1e-4), (torch.float32, 40.0, 1e-4)])
def test_rows_beyond_factorising_take_the_subchunked_form_exactly(chunk_size, dtype, strength, tol):
    """Per-channel gates that pass e^-60 (fp32; e^-600 in float64) within a chunk, on some channels and tokens only:
    those rows go through sub-chunks of 16 (and, the strongest, through the materialised weights inside one); at
    chunk sizes that are and are not multiples of 16, against the recurrence (fp32: as the test above, the running
    sums of such decays round to ~1e-5 of the weights)."""
    q, k, v, g = case(True, seed=5)
    gen = torch.Generator().manual_seed(6)
    g = g - strength * (torch.rand(g.shape, generator=gen, dtype=g.dtype) < 0.3)
    expected, expected_state = recurrence(q, k, v, g)
    out, state = causal_decayed_linear_attention(*(t.to(dtype) for t in (q, k, v, g)), chunk_size=chunk_size)
    assert (out.double() - expected).abs().max() <= tol * expected.abs().max()
    assert (state.double() - expected_state).abs().max() <= tol * expected_state.abs().max()
