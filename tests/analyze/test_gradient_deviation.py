import math

import pandas as pd
import pytest
import torch

from attention_zoo import build_backbone
from harness.analyze.gradient_deviation import gradient_deviation, read_stats, windowed_relative_std
from harness.gradient_log import STATS_FILE, GradientRecorder


def test_windowed_relative_std_known_values():
    assert windowed_relative_std(pd.Series([2.0] * 10), 5) == 0
    assert windowed_relative_std(pd.Series([1.0, 3.0] * 10), 4) == pytest.approx(0.5)
    assert math.isnan(windowed_relative_std(pd.Series([1.0, 2.0]), 5))  # not one full window


def stats_frame(norms, group="qkv", layer=0):
    return pd.DataFrame({"step": range(1, len(norms) + 1), "layer": layer, "mixer": "M", "group": group,
                         "grad_norm": norms})


def test_a_slow_trend_is_not_instability():
    ramp = torch.linspace(10.0, 1.0, 1000).tolist()  # norms shrinking smoothly as the loss falls
    table = gradient_deviation(stats_frame(ramp), window=50)
    row = table[table["layer"] == 0].iloc[0]
    assert row["deviation"] < 0.05 < row["whole_run"]


def test_noisy_gradients_deviate_more_and_layers_average():
    g = torch.Generator().manual_seed(0)
    calm = (1 + 0.1 * torch.randn(200, generator=g)).tolist()
    noisy = (1 + 0.5 * torch.randn(200, generator=g)).abs().tolist()
    table = gradient_deviation(pd.concat([stats_frame(calm, layer=0), stats_frame(noisy, layer=1)]), window=20)
    by_layer = table.set_index(table["layer"].astype(str))["deviation"]
    assert by_layer["0"] < by_layer["1"]
    assert by_layer["all"] == pytest.approx((by_layer["0"] + by_layer["1"]) / 2)


def test_skip_and_window_are_checked():
    with pytest.raises(ValueError, match="window"):
        gradient_deviation(stats_frame([1.0, 2.0]), window=1)
    with pytest.raises(ValueError, match="skip"):
        gradient_deviation(stats_frame([1.0, 2.0]), window=2, skip=5)


def train_steps(model, recorder, steps, first=1):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for step in range(first, first + steps):
        optimizer.zero_grad()
        model(torch.randn(2, 12, 16)).square().mean().backward()
        recorder.on_gradients(model, step)
        optimizer.step()


def test_recorder_writes_norms_of_the_qkv_weights(tmp_path):
    torch.manual_seed(0)
    model = build_backbone("vanilla", dict(d_model=16, n_layers=2, n_heads=2, max_len=16))
    recorder = GradientRecorder(model, tmp_path, flush_every=2)
    train_steps(model, recorder, 3)
    recorder.on_fit_end()
    stats = read_stats(tmp_path)
    assert len(stats) == 3 * 2 * 4  # steps x layers x (q, k, v, qkv)
    last = stats[(stats["step"] == 3) & (stats["layer"] == 1)].set_index("group")["grad_norm"]
    mixer = model.blocks[1].mixer
    assert last["q"] == pytest.approx(float(mixer.q_proj.weight.grad.norm()), rel=1e-6)
    assert last["qkv"] == pytest.approx(math.sqrt(last["q"] ** 2 + last["k"] ** 2 + last["v"] ** 2))


def test_a_line_cut_by_a_crash_is_superseded_after_resuming(tmp_path):
    torch.manual_seed(0)
    model = build_backbone("elu", dict(d_model=16, n_layers=1, n_heads=2, max_len=16))
    recorder = GradientRecorder(model, tmp_path, flush_every=1)
    train_steps(model, recorder, 2)
    with open(tmp_path / STATS_FILE, "a") as f:
        f.write("3,0,EluLinearAtt")  # the crash
    resumed = GradientRecorder(model, tmp_path, flush_every=1)  # resumed from the checkpoint of step 2
    train_steps(model, resumed, 2, first=3)
    stats = read_stats(tmp_path)
    assert sorted(stats["step"].unique()) == [1, 2, 3, 4]
    assert len(stats) == 4 * 4 and stats["grad_norm"].notna().all()
