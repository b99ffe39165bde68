"""A knob's default is written once, in its builder's signature: the registry reads it from there, and each
conf/attention/<name>.yaml (which Hydra composes, and whose values are in existing runs' config hashes) must
state exactly the same values, of the same types."""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

import attention_zoo
from attention_zoo import registry
from attention_zoo.registry import MIXER_ARGUMENTS, LayerPreset

CONF = Path(__file__).resolve().parents[2] / "conf" / "attention"
BUILTIN = [name for name in registry.REGISTRY if name in registry.BUILTIN]


def builder_defaults(name: str) -> dict[str, Any]:
    """The defaults as the builders' signatures state them, read here without the registry's own code: a
    preset's shared knob takes the default of its first part that has it."""
    spec = attention_zoo.get_spec(name)
    if spec.preset is None:
        parameters = inspect.signature(spec.builder).parameters
        return {k: p.default for k, p in parameters.items() if k not in (*MIXER_ARGUMENTS, *spec.fixed_knobs)}
    parts = [builder_defaults(part) for part, _ in (spec.preset.first, spec.preset.second)]
    return {k: next(p[k] for p in parts if k in p) for k in spec.preset.shared}


def typed(knobs: dict[str, Any]) -> dict[str, tuple[type, Any]]:
    return {k: (type(v), v) for k, v in knobs.items()}  # 0 == 0.0 == False: a type drift changes a config hash


def yaml_drift(path: Path, name: str) -> dict[str, Any]:
    """Knob -> (what the YAML states, what the builder states) wherever they differ, in value or type."""
    stated = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    assert stated.pop("name") == name and "layer_plan" in stated
    stated.pop("layer_plan")
    expected = {k: v for k, v in builder_defaults(name).items() if k not in LayerPreset.BACKBONE_KNOBS}
    stated, expected = typed(stated), typed(expected)
    return {k: (stated.get(k), expected.get(k)) for k in stated.keys() | expected.keys()
            if stated.get(k) != expected.get(k)}


def test_every_builtin_has_a_yaml_and_no_other():
    assert sorted(p.stem for p in CONF.glob("*.yaml")) == sorted(BUILTIN)


@pytest.mark.parametrize("name", BUILTIN)
def test_yaml_states_the_builders_defaults(name):
    assert yaml_drift(CONF / f"{name}.yaml", name) == {}


@pytest.mark.parametrize("name", BUILTIN)
def test_registry_reads_the_defaults_off_the_builders(name):
    spec = attention_zoo.get_spec(name)
    assert not spec.default_knobs, "a built-in writes its defaults in its builder's signature"
    assert spec.preset is None or not isinstance(spec.preset.shared, dict), "a preset names its shared knobs"
    expected = builder_defaults(name)
    if spec.preset is not None:  # its builder's own: where the layer sits
        parameters = inspect.signature(spec.builder).parameters
        expected = {k: parameters[k].default for k in LayerPreset.BACKBONE_KNOBS} | expected
    assert typed(spec.knobs) == typed(expected)


@pytest.mark.parametrize("line, drifted", [
    ("attn_dropout: 0.0", "attn_dropout: 0.1"),  # a value
    ("attn_dropout: 0.0", "attn_dropout: 0"),  # a type: equal in Python, not in a config hash
    ("bias: true", "bias: 1"),
    ("impl: sdpa", ""),  # a knob left out
    ("bias: true", "bias: true\nwindow: 8"),  # one the builder does not take
])
def test_a_drifted_yaml_is_caught(tmp_path, line, drifted):
    text = (CONF / "vanilla.yaml").read_text()
    assert line in text
    (tmp_path / "vanilla.yaml").write_text(text.replace(line, drifted))
    assert yaml_drift(tmp_path / "vanilla.yaml", "vanilla")


def test_flash_default_group_size_is_its_builders():
    spec = attention_zoo.get_spec("flash")
    assert inspect.signature(spec.builder).parameters["group_size"].default == spec.knobs["group_size"] == 256
    assert attention_zoo.build_mixer("flash", 16, 2, True).group_size == 256


@pytest.fixture
def clean_registry():
    yield
    for name in set(registry.REGISTRY) - registry.BUILTIN:
        registry.unregister(name)


def test_a_preset_takes_named_shared_defaults_from_its_parts(clean_registry):
    preset = attention_zoo.register_preset("diag_then_elu", "diag_attention", "elu", shared=["chunk_size", "bias"])
    assert preset.shared_defaults() == {"chunk_size": 64, "bias": True}  # elu's chunk_size, diag's bias
    assert attention_zoo.get_spec("diag_then_elu").knobs == {"layer_index": 0, "n_layers": 2, "chunk_size": 64,
                                                             "bias": True}
    with pytest.raises(ValueError, match=r"shared knob\(s\) \['window'\] of neither part"):
        attention_zoo.register_preset("bad", "diag_attention", "elu", shared=["window"])
