"""Bring your own attention: the registration API, entry-point plugins (installed for real, as pip would: a
``.dist-info`` with ``entry_points.txt`` on the path), the conformance checker on the example plugin and on
deliberately wrong mixers, and a plugin's run and Table 4 row through the harness."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import attention_zoo
from attention_zoo import registry

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "examples" / "plugin"
ENTRY_POINTS = """[attention_zoo.backends]
sliding_window = zoo_example_plugin.sliding_window:SlidingWindowAttention
relu_linear = zoo_example_plugin.relu_linear:ReluLinearAttention
"""


class Mine(attention_zoo.MultiHeadMixer):
    """mean of the values (a test mixer)"""

    def __init__(self, d_model, n_heads, causal, scale: float = 1.0, bias: bool = True):
        super().__init__(d_model, n_heads, causal, bias)
        self.scale = scale

    def attend(self, q, k, v, key_valid, x):
        return self.scale * v


@pytest.fixture
def clean_registry():
    yield
    for name in set(registry.REGISTRY) - registry.BUILTIN:
        registry.unregister(name)


def test_register_adds_a_backend_that_builds_like_a_builtin(clean_registry):
    attention_zoo.register("mine", Mine, linear_causal=True, linear_bidirectional=True)
    assert "mine" in attention_zoo.available()
    spec = attention_zoo.get_spec("mine")
    assert (spec.linear_causal, spec.description, spec.knobs) == (True, "mean of the values (a test mixer)",
                                                                  {"scale": 1.0, "bias": True})
    out = attention_zoo.build_mixer("mine", 8, 2, True, scale=2.0)(torch.randn(1, 5, 8))
    assert out.shape == (1, 5, 8)
    backbone = attention_zoo.build_backbone("mine", dict(d_model=8, n_layers=2, n_heads=2, causal=True))
    assert backbone(torch.randn(1, 5, 8)).shape == (1, 5, 8)
    with pytest.raises(ValueError, match=r"unknown knob\(s\) \['scael'\]"):
        attention_zoo.build_mixer("mine", 8, 2, True, scael=2.0)


def test_register_as_a_decorator_attaches_the_flags(clean_registry):
    @attention_zoo.register("decorated", linear_causal=False, linear_bidirectional=True, needs_max_length=True)
    class Decorated(Mine):
        pass

    assert getattr(Decorated, registry.SPEC_ATTRIBUTE)["linear_bidirectional"] is True
    assert attention_zoo.get_spec("decorated").needs_max_length


def test_register_refuses_an_existing_name_unless_replaced(clean_registry):
    with pytest.raises(ValueError, match="'vanilla' is a built-in backend"):
        attention_zoo.register("vanilla", Mine, linear_causal=True, linear_bidirectional=True)
    attention_zoo.register("mine", Mine, linear_causal=True, linear_bidirectional=True)
    other = type("Other", (Mine,), {})
    with pytest.raises(ValueError, match=r"'mine' is already registered \(.*Mine\)"):
        attention_zoo.register("mine", other, linear_causal=True, linear_bidirectional=True)
    attention_zoo.register("mine", other, linear_causal=False, linear_bidirectional=True, replace=True)
    assert attention_zoo.get_spec("mine").builder is other
    with pytest.raises(TypeError, match=r"unknown capability flag\(s\) \['causal_ok'\]"):
        attention_zoo.register("x", Mine, linear_causal=True, linear_bidirectional=True, causal_ok=True)


def test_a_registered_preset_splits_by_depth_and_takes_the_plan_shorthands(clean_registry):
    attention_zoo.register_preset("elu_then_vanilla", ("elu", {}), "vanilla", shared={"bias": True})
    spec = attention_zoo.get_spec("elu_then_vanilla")
    assert (spec.linear_causal, spec.linear_bidirectional) == (False, False)  # vanilla is quadratic
    names = lambda plan: [[n for n, _ in e] for e in attention_zoo.resolve_layer_plan(
        attention_zoo.BackboneConfig(attention="elu_then_vanilla", n_layers=4, layer_plan=plan, knobs={"bias": False}))]
    backbone = attention_zoo.build_backbone({"name": "elu_then_vanilla", "bias": False}, d_model=16, n_layers=4,
                                            n_heads=2)
    kinds = [type(block.mixer).__name__ for block in backbone.blocks]
    assert kinds == ["EluLinearAttention"] * 2 + ["SoftmaxAttention"] * 2
    assert all(block.mixer.q_proj.bias is None for block in backbone.blocks)  # the shared knob reaches both
    assert names("split:1") == [["elu"], ["vanilla"], ["vanilla"], ["vanilla"]]
    assert names("reverse_split:3") == [["vanilla"]] * 3 + [["elu"]]
    assert names("parallel") == [["elu", "vanilla"]] * 4
    with pytest.raises(ValueError, match=r"unknown knob\(s\) \['block_size'\] for backend 'elu_then_vanilla'"):
        attention_zoo.build_backbone({"name": "elu_then_vanilla", "block_size": 8}, d_model=16, n_heads=2)


def test_a_registered_backend_composes_as_attention_choice(clean_registry):
    from hydra import compose, initialize_config_dir

    from harness.compose import register_configs
    from harness.config import ConfigError, validate
    from tests.harness.conftest import CONF_DIR, SMOKE

    attention_zoo.register("mine", Mine, linear_causal=True, linear_bidirectional=True)
    assert "mine" in register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*SMOKE, "attention=mine", "attention.scale=0.5"])
        assert validate(cfg).attention.knobs == {"scale": 0.5, "bias": True}
        cfg = compose(config_name="config", overrides=[*SMOKE, "attention=mine", "+attention.scael=0.5"])
    with pytest.raises(ConfigError, match=r"unknown knob\(s\) \['scael'\].*valid knobs: \['bias', 'scale'\]"):
        validate(cfg)


# ----------------------------------------------------------------------------- installed, in subprocesses
def installed(tmp_path: Path, entry_points: str = ENTRY_POINTS, name: str = "attention_zoo_example_plugin") -> dict:
    """An environment in which the example plugin is an installed distribution (what ``pip install`` leaves:
    a ``.dist-info`` with its entry points, and the package importable)."""
    dist = tmp_path / "site" / f"{name}-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text(entry_points)
    path = os.pathsep.join([str(tmp_path / "site"), str(PLUGIN), str(REPO), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "WANDB_MODE": "disabled"}


def python(env: dict, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_an_installed_plugin_is_available_and_passes_the_checker(tmp_path):
    env = installed(tmp_path)
    done = python(env, "-c", "import attention_zoo; print(attention_zoo.available())")
    assert "'sliding_window', 'relu_linear'" in done.stdout, done.stderr
    done = python(env, "-m", "attention_zoo.check", "relu_linear", "--reference",
                  "zoo_example_plugin.relu_linear:reference")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "float64 reference" in done.stdout and "linear, declared linear" in done.stdout
    assert " 0 failed" in done.stdout
    done = python(env, "-m", "attention_zoo.check", "sliding_window", "--knob", "window=8", "--no-scaling",
                  "--reference", "zoo_example_plugin.sliding_window:reference")
    assert done.returncode == 0 and " 0 failed" in done.stdout, done.stdout + done.stderr


def test_a_broken_plugin_is_reported_and_the_builtins_still_work(tmp_path):
    env = installed(tmp_path, "[attention_zoo.backends]\nbroken = no_such_module.mixer:Mixer\n", "broken_plugin")
    done = python(env, "-c", "import attention_zoo; print(len(attention_zoo.available()))")
    assert done.returncode == 0 and done.stdout.strip() == str(len(registry.BUILTIN))
    assert "plugin 'broken' from broken-plugin" in done.stderr and "No module named 'no_such_module'" in done.stderr


@pytest.mark.parametrize("mixer, options, reason", [
    ("PeekAhead", ["--causal", "--no-scaling"], "sees the future: perturbing the tokens after 0 changes the output "
                                                "at position 0 (batch row 0)"),
    ("LeakyPadding", ["--bidirectional", "--no-scaling"], "right padding leaks: changing the padded tokens of "
                                                          "batch row 1 changes its real output at position 0"),
    ("FakeLinear", ["--bidirectional"], "declared linear but grows quadratically"),
    ("LatePeek", ["--causal", "--no-scaling"], "sees the future: perturbing the tokens after 64 changes the output "
                                              "at position 64 (batch row 8)"),
    ("RightPaddingOnly", ["--causal", "--no-scaling", "--reference", "tests.attention_zoo.wrong_mixers:reference"],
     "first at batch row 2 (left padding), position 10"),
    ("RowZeroMask", ["--causal", "--no-scaling"], "right padding: batch row 1 (50 real tokens of 50, in a batch whose "
                                                 "row 0 is padded) has a real output at position 38"),
])
def test_the_checker_fails_a_wrong_mixer_with_the_reason(mixer, options, reason):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = python(env, "-m", "attention_zoo.check", f"tests.attention_zoo.wrong_mixers:{mixer}", *options)
    assert done.returncode == 1, done.stdout + done.stderr
    assert reason in done.stdout, done.stdout


@pytest.mark.slow
def test_a_plugin_trains_and_gets_a_table4_row(tmp_path):
    env = installed(tmp_path)
    results = tmp_path / "results"
    done = python(env, "-m", "harness.run", "attention=sliding_window", "attention.window=8", "scale=smoke",
                  "logger=none", "trainer.progress=false", "trainer.max_steps=4", f"run.root={results / 'single'}")
    assert done.returncode == 0 and "test perplexity" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
    done = python(env, "-m", "harness.run", "attention=sliding_window", "attention.windw=8", "scale=smoke")
    assert done.returncode != 0 and "valid keys under attention: ['bias', 'layer_plan', 'name', 'window']" in (
        done.stdout + done.stderr)
    done = python(env, "-m", "harness.reproduce", "table4", "--scale", "smoke", "--results", str(results),
                  "--extra-backends", "relu_linear", "--", "trainer.max_steps=2", "trainer.eval_every=2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = (results / "report" / "smoke" / "table4.md").read_text()
    # the paper's 8 rows, the 3 successors, 5 of the 2026 zoo and the plugin, 2 columns each
    assert "| relu_linear (not in the paper) |" in table and "cells: 34 ok, 0 failed" in table
