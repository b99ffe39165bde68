"""Recurrent inference equals the parallel forward: every causal backend (and the T1/T2 halves), a whole
backbone and the LM's logits, prefilled in one call or in chunks of odd sizes, then decoded one token at a
time, also in left-padded batches; bf16 decoding stays near fp32."""
from __future__ import annotations

import pytest
import torch

import attention_zoo
from attention_zoo.conformance import TOL_BF16, relative_error, well_conditioned_tokens
from tests.attention_zoo.cases import SMALL_CASES, build, inputs, padding_mask

TOL = 1e-10  # float64: only the summation order differs (observed ~5e-16)
PROMPT, TOTAL = 23, 70
# each case a decoding knob set: cosFormer decodes with a fixed horizon only
DECODING_CASES = [pytest.param(p.values[0], p.values[1] | ({"max_len": 80} if p.values[0] == "cosformer" else {}),
                               id=p.id) for p in SMALL_CASES]
PREFIX_ONLY = {"flash_quad"}  # divides by the sequence length: each token's output is that of its prefix


def decode(module, x, chunks, padding=None):
    """Feed ``x`` in chunks of the given sizes, then one token at a time; the concatenated outputs."""
    state = module.init_state(x.shape[0])
    outputs, start = [], 0
    with torch.no_grad():
        for size in [*chunks, *[1] * (x.shape[1] - sum(chunks))]:
            mask = None if padding is None else padding[:, start : start + size]
            out, state = module.step(x[:, start : start + size], state, mask)
            outputs.append(out)
            start += size
    return torch.cat(outputs, dim=1), state


def expected_outputs(module, x, name, padding=None):
    with torch.no_grad():
        if name not in PREFIX_ONLY:
            return module(x, padding)
        first = module(x[:, :PROMPT], None if padding is None else padding[:, :PROMPT])
        rest = [module(x[:, : t + 1], None if padding is None else padding[:, : t + 1])[:, -1:]
                for t in range(PROMPT, x.shape[1])]
        return torch.cat([first, *rest], dim=1)


@pytest.mark.parametrize("chunks", [[PROMPT], [5, 11, 7], [1, 2]], ids=["prefill", "odd-chunks", "tiny-chunks"])
@pytest.mark.parametrize("name, knobs", DECODING_CASES)
def test_prefill_then_decode_equals_the_parallel_forward(name, knobs, chunks):
    module = build(name, True, knobs)
    x = inputs(2, TOTAL)
    if name in PREFIX_ONLY and chunks != [PROMPT]:
        pytest.skip("flash_quad's prefix semantics are defined for a one-call prefill")
    got, state = decode(module, x, chunks)
    assert relative_error(got, expected_outputs(module, x, name)) <= TOL
    assert state.count.tolist() == [TOTAL, TOTAL]


@pytest.mark.parametrize("name, knobs", DECODING_CASES)
def test_left_padded_prompts_of_different_lengths(name, knobs):
    """Row 1's prompt has 9 real tokens behind 14 pads: its outputs are those of the sequence alone."""
    module = build(name, True, knobs)
    x, mask = inputs(2, TOTAL), padding_mask([TOTAL, TOTAL - 14], TOTAL, "left")
    got, state = decode(module, x, [PROMPT], mask)
    expected = expected_outputs(module, x, name, mask)
    real = ~mask[..., None]
    assert relative_error(got * real, expected * real) <= TOL
    assert (got[mask] == 0).all() and state.count.tolist() == [TOTAL, TOTAL - 14]


@pytest.mark.parametrize("name, knobs", [c for c in DECODING_CASES if c.values[0] not in PREFIX_ONLY])
def test_an_off_by_one_state_is_caught(name, knobs):
    """The check has teeth: decoding with a position counter one ahead changes the outputs."""
    module = build(name, True, knobs)
    x = inputs(1, 40)
    state = module.init_state(1)
    with torch.no_grad():
        module.step(x[:, :20], state)
        if "fill" in state.tensors and "cross" not in state.tensors:  # DiagAttention: its place in the block
            state.tensors["fill"] = state.tensors["fill"] + 1
        else:
            state.count += 1
        out, _ = module.step(x[:, 20:21], state)
    uses_positions = name in ("cosformer", "norm_attention", "diag_attention", "flash", "lightning", "retnet") or (
        "transnormer" in name)
    if not uses_positions:
        pytest.skip(f"{name}'s outputs do not depend on positions (no relative encoding) or it recomputes")
    assert relative_error(out, module(x[:, :21])[:, 20:21]) > 1e-6


@pytest.mark.parametrize("preset", ["transnormer_t1", "transnormer_t2", "vanilla", "flash", "elu", "lightning", "gla",
                                    "deltanet", "gated_deltanet", "mamba2", "based", "hedgehog", "hgrn2"])
def test_backbone_and_lm_logits_decode_exactly(preset):
    from tasks.lm import LanguageModel

    torch.manual_seed(0)
    knobs = {"block_size": 16, "chunk_size": 16} if preset.startswith("transnormer") else {}
    backbone = attention_zoo.build_backbone({"name": preset, **knobs}, dict(d_model=32, n_layers=4, n_heads=4,
                                                                            causal=True, max_len=128, dropout=0.0))
    model = LanguageModel(backbone, vocab_size=50, pad_index=1).double().eval()
    tokens = torch.randint(2, 50, (2, 60))
    mask = padding_mask([60, 41], 60, "left")
    tokens = tokens.masked_fill(mask, 1)
    with torch.no_grad():
        expected = model(tokens, mask)
        state = model.init_state(2)
        first, state = model.step(tokens[:, :21], state, mask[:, :21])
        rest = [model.step(tokens[:, t : t + 1], state, mask[:, t : t + 1])[0] for t in range(21, 60)]
    got = torch.cat([first, *rest], dim=1)
    real = ~mask[..., None]
    assert relative_error(got * real, expected * real) <= TOL


@pytest.mark.parametrize("name, knobs", [c for c in DECODING_CASES if c.values[0] not in PREFIX_ONLY])
def test_bf16_decoding_stays_near_fp32(name, knobs):
    module = build(name, True, knobs, dtype=torch.float32)
    x = inputs(2, 50, dtype=torch.float32)
    expected, _ = decode(module, x, [20])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, _ = decode(module, x, [20])
    # conformance.TOL_BF16, the parallel forms' bound, on the tokens it compares there (a norm over a near-zero
    # attention output amplifies its rounding without bound: T1's ReLU blocks)
    compared = well_conditioned_tokens(module, x, None)
    assert relative_error(got.float()[compared], expected[compared]) <= TOL_BF16


def test_cosformer_says_it_needs_max_len_to_decode():
    module = build("cosformer", True, {"chunk_size": 16})
    with pytest.raises(ValueError, match="max_len"):
        module.step(inputs(1, 4), module.init_state(1))


def test_bidirectional_mixers_refuse_to_decode():
    with pytest.raises(ValueError, match="causal=False"):
        build("norm_attention", False, {}).init_state(1)


def test_a_mixer_without_a_recurrent_form_decodes_by_recomputation():
    """A plugin that implements only ``attend`` still decodes, exactly (from every input so far)."""
    class CausalMean(attention_zoo.MultiHeadMixer):
        def attend(self, q, k, v, key_valid, x):
            return v.cumsum(-2) / torch.arange(1, v.shape[-2] + 1, dtype=v.dtype)[:, None]

    torch.manual_seed(0)
    module = CausalMean(32, 4, True).double().eval()
    x = inputs(2, 30)
    got, state = decode(module, x, [7, 4])
    assert relative_error(got, module(x)) <= TOL and "inputs" in state.tensors
