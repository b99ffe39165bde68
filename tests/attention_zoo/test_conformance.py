"""The conformance battery against mixers that break the contract on purpose (tests/attention_zoo/wrong_mixers.py):
each fails the property it breaks, saying where, while a correct softmax mixer passes the same checks.

The wrong mixers register themselves when imported, so they are imported inside the tests (not at collection,
where tests/attention_zoo/cases.py lists the registered backends) and unregistered after each."""
from __future__ import annotations

import importlib

import pytest
import torch

from attention_zoo import conformance, registry
from attention_zoo.check import parse_args, run_checks
from attention_zoo.conformance import ConformanceError
from tests.attention_zoo.cases import D_MODEL, N_HEADS, make_for

OLD_CUTS, OLD_LENGTH = (0, 15, 16, 31, 40, 63), 70  # causality before: no cut past the first 64 tokens


@pytest.fixture
def wrong():
    yield importlib.import_module("tests.attention_zoo.wrong_mixers")
    for name in set(registry.REGISTRY) - registry.BUILTIN:
        registry.unregister(name)


def make_of(cls: type, **knobs):
    """The battery's ``make`` for a mixer class, at the tests' sizes."""
    def make(causal: bool, *, dtype=torch.float64, device="cpu", seed: int = 0) -> torch.nn.Module:
        torch.manual_seed(seed)
        return cls(D_MODEL, N_HEADS, causal, **knobs).to(device=device, dtype=dtype).eval()

    return make


# -------------------------------------------------------------------------------------------- causality
def test_a_leak_from_position_64_on_fails_causality(wrong):
    make = make_of(wrong.LatePeek)
    conformance.check_causality(make, cuts=OLD_CUTS, length=OLD_LENGTH)  # the cuts that used to pass it
    with pytest.raises(ConformanceError, match=r"sees the future: perturbing the tokens after 64 changes the output "
                                               r"at position 64 \(batch row 8\)"):
        conformance.check_causality(make)


def test_a_gradient_only_leak_fails_causality(wrong):
    with pytest.raises(ConformanceError, match="sees the future: the token at 1 reaches an output at or before 0 "
                                               "through the gradient"):
        conformance.check_causality(make_of(wrong.GradientPeek))


def test_a_length_dependent_output_fails_prefix_consistency_unless_declared(wrong):
    make = make_of(wrong.LengthScaled)
    with pytest.raises(ConformanceError, match=r"not prefix-consistent: the output at position 0 from the tokens "
                                               r"0\.\.0 alone differs"):
        conformance.check_causality(make)
    assert "prefixes alone" not in conformance.check_causality(make, prefix_consistent=False)


def test_size_knobs_are_found_and_made_small():
    knobs = {"chunk_size": 64, "block_size": 4, "window": 16, "group_size": None, "n_features": 256,
             "segment_landmarks": 1, "qk_dim": 128, "normalize": True}
    assert conformance.small_size_knobs(knobs) == {"chunk_size": 8, "window": 8}


def test_the_checker_reruns_causality_with_a_small_chunk_size(wrong):
    """A leak at chunk edges is invisible at the default chunk_size (512 > N) and caught at chunk_size=8."""
    rows = run_checks(parse_args(["tests.attention_zoo.wrong_mixers:ChunkEdgePeek", "--causal", "--no-scaling"]))
    results = {row.check: (row.result, row.figure) for row in rows}
    assert results["causality"][0] == "PASS"
    result, figure = results["causality (chunk_size=8)"]
    assert result == "FAIL" and figure.startswith("sees the future: perturbing the tokens after 7 changes the output "
                                                  "at position 7 (batch row 1)")


@pytest.mark.parametrize("name, small", [("elu", "chunk_size=8"), ("transnormer_t2", "block_size=8, chunk_size=8"),
                                         ("ls", "window_size=8")])
def test_the_checker_passes_builtins_with_small_size_knobs(name, small):
    rows = run_checks(parse_args([name, "--causal", "--no-scaling"]))
    assert [(r.check, r.result) for r in rows if r.check.startswith("causality")] == [
        ("causality", "PASS"), (f"causality ({small})", "PASS")]


# ---------------------------------------------------------------------------------------------- padding
def test_assuming_right_padding_fails_padding_and_the_reference(wrong):
    make = make_of(wrong.RightPaddingOnly)
    with pytest.raises(ConformanceError, match=r"left padding: batch row 0 \(37 real tokens of 50, .*\) has a real "
                                               r"output at position 14 that is not what its real tokens give alone"):
        conformance.check_padding(make, True)
    for causal, position in ((True, 10), (False, 9)):
        with pytest.raises(ConformanceError, match=rf"N=17: output: relative error .* > 1\.0e-10; first at batch row "
                                                   rf"2 \(left padding\), position {position} \(relative error"):
            conformance.check_reference(make, causal, wrong.reference)


def test_one_rows_mask_for_every_row_fails_padding_and_the_reference(wrong):
    make = make_of(wrong.RowZeroMask)
    with pytest.raises(ConformanceError, match=r"right padding: batch row 1 \(50 real tokens of 50, in a batch whose "
                                               r"row 0 is padded\) has a real output at position 38"):
        conformance.check_padding(make, True)
    with pytest.raises(ConformanceError, match="right padding leaks: changing the padded tokens of batch row 1"):
        conformance.check_padding(make, False)
    with pytest.raises(ConformanceError, match=r"first at batch row 1 \(no padding\), position 9"):
        conformance.check_reference(make, True, wrong.reference)


# -------------------------------------------------------------------------------------------- reference
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
def test_a_correct_mixer_passes_the_reference_under_every_padding(wrong, causal):
    figure = conformance.check_reference(make_for("vanilla", {}), causal, wrong.reference)
    assert "right, left and scattered padding" in figure


def test_a_float32_reference_is_refused_by_name(wrong):
    with pytest.raises(ConformanceError, match="the reference returned torch.float32 for float64 inputs"):
        conformance.check_reference(make_for("vanilla", {}), True, lambda *args: wrong.reference(*args).float())


def test_a_nan_that_appears_after_perturbing_the_future_counts_as_a_change():
    reference = torch.zeros(1, 4, 2, dtype=torch.float64)
    out = reference.clone()
    out[0, 2, 1] = float("nan")
    assert conformance._first_change(out, reference, 0.0)[:2] == (0, 2)


def test_only_size_knobs_are_made_small_not_counts():
    knobs = {"chunk_size": 64, "window": 32, "block_len": 16, "n_groups": 64, "num_blocks": 16, "group_size": 4}
    assert conformance.small_size_knobs(knobs) == {"chunk_size": 8, "window": 8, "block_len": 8}
