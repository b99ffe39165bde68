"""A plugin that failed to load is named again wherever its name is refused (the registry, the config check,
the command line, ./reproduce.sh), not only in the warning printed at the first use of the registry."""
from __future__ import annotations

import argparse
import importlib.metadata

import pytest

import attention_zoo
from attention_zoo import registry
from tests.attention_zoo.test_plugins import installed, python

BROKEN = importlib.metadata.EntryPoint(name="broken", value="no_such_module.mixer:Mixer",
                                      group=registry.PLUGIN_GROUP)
ERROR = "ModuleNotFoundError: No module named 'no_such_module'"


@pytest.fixture
def broken_plugin(monkeypatch):
    """The registry as it is after loading an entry point whose module does not import."""
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    monkeypatch.setattr(registry, "PLUGIN_ERRORS", {})
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group=None: [BROKEN] if group == registry.PLUGIN_GROUP else [])
    with pytest.warns(RuntimeWarning, match="plugin 'broken'"):
        registry.load_plugins()
    yield


def test_the_failed_plugin_is_kept_with_its_error(broken_plugin):
    failure = registry.failed_plugins()["broken"]
    assert (failure.target, failure.error) == ("no_such_module.mixer:Mixer", ERROR)
    assert "broken" not in attention_zoo.available()


def test_asking_for_a_failed_plugin_repeats_why_it_failed(broken_plugin):
    with pytest.raises(ValueError) as err:
        attention_zoo.build_mixer("broken", 8, 2, True)
    message = str(err.value)
    assert message.startswith("attention backend 'broken' is a plugin that failed to load")
    assert "no_such_module.mixer:Mixer" in message and ERROR in message and "transnormer_t2" in message


def test_any_unknown_name_lists_the_plugins_that_failed(broken_plugin):
    with pytest.raises(ValueError, match="unknown attention backend 'nope'") as err:
        attention_zoo.get_spec("nope")
    assert f"plugin(s) that failed to load: 'broken' from an unknown distribution (no_such_module.mixer:Mixer): " \
           f"{ERROR}" in str(err.value)


def test_the_config_check_and_the_command_line_repeat_it(broken_plugin):
    from harness.compose import check_override_keys
    from harness.config import ConfigError, validate_attention
    from harness.reproduce.cli import backend_list
    from tests.harness.conftest import CONF_DIR

    with pytest.raises(ConfigError, match=f"attention.name='broken': .*{ERROR}"):
        validate_attention({"name": "broken"})
    for overrides in (["attention=broken"], ["-m", "attention=vanilla,broken", "seed=0,1"]):
        with pytest.raises(ConfigError, match=f"attention=broken: .*failed to load.*{ERROR}"):
            check_override_keys(overrides, CONF_DIR)
    check_override_keys(["-m", "attention=vanilla,elu"], CONF_DIR)  # the others are fine
    with pytest.raises(argparse.ArgumentTypeError, match=f"unknown backend.*'broken'.*{ERROR}"):
        backend_list("vanilla,broken")


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "", "-x", "x y"])
def test_a_name_that_is_no_folder_name_cannot_be_registered(name):
    with pytest.raises(ValueError, match="becomes a folder of every run"):
        attention_zoo.register(name, lambda d_model, n_heads, causal: None, linear_causal=True,
                               linear_bidirectional=True)
    assert name not in registry.REGISTRY


def test_a_run_of_a_failed_plugin_ends_with_the_plugins_error(tmp_path):
    """Installed for real: the last line of ``python -m harness.run attention=broken`` names the plugin, its
    distribution and its import error (before: Hydra's "Could not find 'attention/broken'" and the options)."""
    env = installed(tmp_path, "[attention_zoo.backends]\nbroken = no_such_module.mixer:Mixer\n", "broken_plugin")
    done = python(env, "-m", "harness.run", "attention=broken", "scale=smoke", "logger=none",
                  f"run.root={tmp_path / 'runs'}")
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode != 0 and "attention backend 'broken' is a plugin that failed to load" in last, done.stderr
    assert "from broken-plugin (no_such_module.mixer:Mixer)" in last and ERROR in last
