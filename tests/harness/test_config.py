"""The conf/ tree composes for every group choice and is validated before any work, with named errors."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hydra.errors import ConfigCompositionException, MissingConfigException

from attention_zoo import available, get_spec
from harness.config import BACKBONE_OWNED_KNOBS, ConfigError, config_hash, resolved_dict, validate
from tests.harness.conftest import CONF_DIR, compose_config


def test_default_is_causal_lm_transnormer_t2_builtin_cpu():
    cfg = validate(compose_config())
    assert (cfg.task.name, cfg.attention.name, cfg.scale.name) == ("lm", "transnormer_t2", "cpu")
    assert cfg.task.data.source == "builtin" and cfg.logger.mode == "offline"


@pytest.mark.parametrize("name", available())
def test_every_backend_has_a_config_with_all_its_knobs(name):
    path = Path(CONF_DIR) / "attention" / f"{name}.yaml"
    knobs = yaml.safe_load(path.read_text())
    expected = {k: v for k, v in get_spec(name).knobs.items() if k not in BACKBONE_OWNED_KNOBS}
    assert knobs.pop("name") == name and "layer_plan" in knobs
    knobs.pop("layer_plan")
    assert knobs == expected  # the knobs a user sees are the registry's, with its defaults
    assert validate(compose_config(f"attention={name}", "scale=smoke")).attention.name == name


@pytest.mark.parametrize("scale", ["smoke", "cpu", "paper"])
def test_every_scale_composes_for_lm(scale):
    cfg = validate(compose_config(f"scale={scale}"))
    assert cfg.scale.name == scale
    if scale == "paper":  # PAPER.md section 4
        t = cfg.trainer
        assert (cfg.task.seq_len, t.global_batch_size, t.max_steps, t.warmup_steps) == (512, 128, 100_000, 8000)
        assert (t.lr, t.schedule, t.warmup_init_lr, t.weight_decay, t.clip_norm) == (
            5e-4, "inverse_sqrt", 1e-7, 0.01, 0.0)
        assert (cfg.model.d_model, cfg.model.n_layers, cfg.model.n_heads) == (512, 6, 8)


def test_user_overrides_win_over_the_scale_preset():
    cfg = validate(compose_config("scale=cpu", "trainer.max_steps=7", "model.d_model=64"))
    assert cfg.trainer.max_steps == 7 and cfg.model.d_model == 64


def test_table4_experiment_sweeps_the_papers_backends():
    text = (Path(CONF_DIR) / "experiment" / "table4.yaml").read_text()
    backends = yaml.safe_load(text)["hydra"]["sweeper"]["params"]["attention"].split(",")
    assert set(backends) <= set(available()) and "transnormer_t2" in backends and "vanilla" in backends


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["+trainer.max_stpes=3"], ["trainer.max_stpes", "max_steps"]),  # misspelled key: named, valid keys listed
        (["trainer.max_steps=abc"], ["trainer.max_steps", "Integer"]),
        (["trainer.schedule=linear"], ["trainer.schedule", "inverse_sqrt", "cosine"]),
        (["trainer.precision=fp16"], ["trainer.precision", "bf16"]),
        (["+task.seq_lne=3"], ["task.seq_lne", "seq_len"]),
        (["task.data.source=hf"], ["task.data.source", "files"]),
        (["+attention.block_sise=3"], ["block_sise", "block_size"]),
        (["+model.depth=3"], ["model.depth", "n_layers"]),
        (["trainer.global_batch_size=10", "trainer.micro_batch_size=4"], ["global_batch_size", "micro_batch_size"]),
        (["+foo=1"], ["foo", "trainer"]),
    ],
)
def test_bad_config_fails_naming_key_and_choices(overrides, expected):
    with pytest.raises(ConfigError) as err:
        validate(compose_config("scale=smoke", *overrides))
    for text in expected:
        assert text in str(err.value)


def test_unknown_group_choice_lists_the_options():
    with pytest.raises((MissingConfigException, ConfigCompositionException)) as err:
        compose_config("attention=softmax")
    assert "vanilla" in str(err.value) and "transnormer_t2" in str(err.value)


def test_files_source_needs_a_path():
    with pytest.raises(ConfigError, match="task.data.path"):
        validate(compose_config("scale=smoke", "task.data.source=files"))


def test_config_hash_ignores_logging_and_locations_but_not_the_experiment():
    base = config_hash(resolved_dict(compose_config("scale=smoke")))
    same = config_hash(resolved_dict(compose_config("scale=smoke", "logger=none", "run.root=/elsewhere",
                                                    "trainer.progress=false", "task.data.cache_dir=/x")))
    other = config_hash(resolved_dict(compose_config("scale=smoke", "seed=1")))
    assert base == same and base != other
