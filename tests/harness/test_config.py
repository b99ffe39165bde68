"""The conf/ tree composes for every group choice and is validated before any work, with named errors."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf

from attention_zoo import available, get_spec
from harness.compose import check_override_keys
from harness.config import (
    BACKBONE_OWNED_KNOBS,
    ConfigError,
    ModelConfig,
    RunSection,
    TrainerConfig,
    config_hash,
    resolved_dict,
    validate,
    validate_attention,
)
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
    assert validate_attention({"name": name, "layer_plan": None, **knobs}).knobs == expected


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


@pytest.fixture(scope="module")
def smoke():
    return compose_config("scale=smoke")


def changed(cfg, **updates):
    """A copy of ``cfg`` with dotted keys set (added if missing), as an override on the command line would."""
    cfg = OmegaConf.create(OmegaConf.to_container(cfg))  # untyped: the schemas would refuse bad values here
    OmegaConf.set_struct(cfg, False)
    for key, value in updates.items():
        OmegaConf.update(cfg, key.replace("__", "."), value, force_add=True)
    return cfg


@pytest.mark.parametrize(
    "updates, expected",
    [
        ({"trainer__max_stpes": 3}, ["trainer.max_stpes", "max_steps"]),  # misspelled: named, valid keys listed
        ({"trainer__max_steps": "abc"}, ["trainer.max_steps", "Integer"]),
        ({"trainer__schedule": "linear"}, ["trainer.schedule", "inverse_sqrt", "cosine"]),
        ({"trainer__precision": "fp16"}, ["trainer.precision", "bf16"]),
        ({"task__seq_lne": 3}, ["task.seq_lne", "seq_len"]),
        ({"task__data__source": "hf"}, ["task.data.source", "files"]),
        ({"task__data__source": "files"}, ["task.data.path"]),
        ({"attention__block_sise": 3}, ["block_sise", "block_size"]),
        ({"model__depth": 3}, ["model.depth", "n_layers"]),
        ({"trainer__global_batch_size": 10, "trainer__micro_batch_size": 4}, ["global_batch_size", "micro_batch"]),
        ({"foo": 1}, ["foo", "trainer"]),
    ],
)
def test_bad_config_fails_naming_key_and_choices(smoke, updates, expected):
    with pytest.raises(ConfigError) as err:
        validate(changed(smoke, **updates))
    for text in expected:
        assert text in str(err.value)


def test_the_schemas_hold_the_defaults_and_check_types_while_hydra_composes():
    """trainer, model, logger and run come from the dataclasses (no YAML copy of their defaults)."""
    assert not (Path(CONF_DIR) / "trainer" / "default.yaml").exists()
    cfg = compose_config()
    assert OmegaConf.get_type(cfg.trainer) is TrainerConfig and cfg.trainer.betas == TrainerConfig().betas
    assert OmegaConf.get_type(cfg.model) is ModelConfig and cfg.run.root == RunSection().root
    for override, key in (("trainer.lr=fast", "trainer.lr"), ("model.n_layers=1.5", "model.n_layers")):
        with pytest.raises(ConfigCompositionException) as err:
            compose_config(override)
        assert key in str(err.value) or key in str(err.value.__cause__)


def test_unknown_group_choice_lists_the_options():
    with pytest.raises((MissingConfigException, ConfigCompositionException)) as err:
        compose_config("attention=softmax")
    assert "vanilla" in str(err.value) and "transnormer_t2" in str(err.value)


def test_config_hash_ignores_logging_and_locations_but_not_what_changes_results(smoke):
    base = config_hash(resolved_dict(smoke))
    same = config_hash(resolved_dict(compose_config("scale=smoke", "logger=none", "run.root=/elsewhere",
                                                    "trainer.progress=false", "task.data.cache_dir=/x")))
    assert base == same
    for updates in ({"seed": 1}, {"trainer__lr": 1e-4}, {"attention__block_size": 32}, {"task__seq_len": 8},
                    {"model__activation_dropout": 0.1}):
        assert config_hash(resolved_dict(changed(smoke, **updates))) != base


def test_keys_added_later_leave_the_hash_of_earlier_runs_alone(smoke):
    """model.activation_dropout at 0 and trainer.compile off (the behaviour before the keys existed) hash as if
    they were absent."""
    resolved = resolved_dict(smoke)
    assert resolved["model"]["activation_dropout"] == 0.0 and resolved["trainer"]["compile"] is False
    del resolved["model"]["activation_dropout"], resolved["trainer"]["compile"]
    assert config_hash(resolved) == config_hash(resolved_dict(smoke))
    assert config_hash(resolved_dict(changed(smoke, trainer__compile=True))) != config_hash(resolved)


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["trainer.max_stpes=3"], ["trainer.max_stpes", "max_steps"]),
        (["-m", "attention=vanilla,elu", "attention.block_size=3"], ["attention.block_size", "impl"]),
        (["tsk.seq_len=3"], ["tsk.seq_len", "the top level", "task"]),
    ],
)
def test_command_line_typos_fail_listing_the_valid_keys(overrides, expected):
    with pytest.raises(ConfigError) as err:
        check_override_keys(overrides, CONF_DIR)
    for text in expected:
        assert text in str(err.value)
    check_override_keys(["-m", "attention=vanilla,elu", "attention.impl=math", "+extra=1"], CONF_DIR)  # all fine


# ------------------------------------------------------------------ attention knobs, checked before any run
def with_attention(cfg, name: str, layer_plan=None, **knobs):
    """``cfg`` with its attention section replaced (knobs not given: the builder's defaults)."""
    cfg = changed(cfg)
    OmegaConf.update(cfg, "attention", {"name": name, "layer_plan": layer_plan, **knobs}, merge=False)
    return cfg


@pytest.mark.parametrize(
    "attention, model, expected",
    [  # the key, the bad value and what would be right, in one line
        ({"name": "elu", "eps": "abc"}, {}, ["attention.eps='abc'", "must be float", "(str)"]),
        ({"name": "elu", "normalize": "maybe"}, {}, ["attention.normalize='maybe'", "must be bool"]),
        ({"name": "elu", "chunk_size": 2.5}, {}, ["attention.chunk_size=2.5", "must be int"]),
        ({"name": "elu", "chunk_size": -3}, {}, ["attention.chunk_size=-3", "positive integer"]),
        ({"name": "transnormer_t2", "chunk_size": -3}, {}, ["attention.chunk_size=-3", "'transnormer_t2'", "positive"]),
        ({"name": "vanilla", "impl": "flash"}, {}, ["attention.impl='flash'", "'sdpa', 'math'"]),
        ({"name": "performer", "n_features": 0}, {}, ["attention.n_features=0", "positive integer"]),
        ({"name": "transnormer_t2", "layer_plan": "split:9"}, {}, ["layer_plan='split:9'", "outside [0, n_layers=2]"]),
        ({"name": "vanilla", "pos": "rope"}, {"model__d_model": 30}, ["attention='vanilla'", "model.d_model=30",
                                                                     "even head dimension"]),
    ],
)
def test_a_bad_knob_fails_in_validate_naming_key_value_and_what_is_valid(smoke, attention, model, expected):
    """Before: these passed validate and failed in the run (a 50-line traceback and a failed run folder)."""
    with pytest.raises(ConfigError) as err:
        validate(with_attention(changed(smoke, **model), **attention))
    for text in expected:
        assert text in str(err.value), str(err.value)


def test_a_plugin_knob_is_checked_against_its_builders_annotation(smoke):
    """A builder that checks nothing itself: ``init_temperature: float`` given ``abc`` fails in validate."""
    import attention_zoo
    from attention_zoo import registry

    class Tempered(attention_zoo.MultiHeadMixer):
        def __init__(self, d_model: int, n_heads: int, causal: bool, init_temperature: float = 1.0,
                     heads: list[int] | None = None, bias: bool = True):
            super().__init__(d_model, n_heads, causal, bias)

        def attend(self, q, k, v, key_valid, x):
            return v

    attention_zoo.register("tempered", Tempered, linear_causal=True, linear_bidirectional=True)
    try:
        assert validate(with_attention(smoke, "tempered", init_temperature=2, heads=[1, 2])).attention.knobs == {
            "init_temperature": 2, "heads": [1, 2]}
        for knobs, expected in (({"init_temperature": "abc"}, "attention.init_temperature='abc'"),
                                ({"heads": [1, "x"]}, "a list of int")):
            with pytest.raises(ConfigError, match="Tempered") as err:
                validate(with_attention(smoke, "tempered", **knobs))
            assert expected in str(err.value)
    finally:
        registry.unregister("tempered")


def test_a_bad_knob_leaves_no_run_folder(tmp_path):
    """The run stops at validate: one line on the console, nothing under run.root."""
    from harness.execute import execute
    from tests.harness.conftest import SMOKE

    cfg = compose_config(*SMOKE, f"run.root={tmp_path / 'runs'}", "attention=elu", "attention.chunk_size=-3")
    with pytest.raises(ConfigError, match=r"attention.chunk_size=-3 .* positive integer"):
        execute(cfg)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("experiment", ["table1", "table4", "table8", "table11", "table12"])
def test_the_tables_configs_still_validate(experiment):
    """The build check accepts what the tables run (their first configuration, at the cpu scale)."""
    assert validate(compose_config(f"experiment={experiment}", "scale=cpu")).attention.name


@pytest.mark.parametrize("family, name, message", [
    ("glue/sst2", "glue/nope", r"task.name='glue/nope' is not a GLUE task; valid choices: \['glue/cola'"),
    ("lra/listops", "lra/nope", r"task.name='lra/nope': unknown LRA task .*'lra/listops'"),
])
def test_an_unknown_sub_task_fails_in_validate_with_the_choices(family, name, message):
    with pytest.raises(ConfigError, match=message):
        validate(compose_config("scale=smoke", f"task={family}", f"task.name={name}"))
