"""No run writes outside ``run.root``: every config value that becomes part of a run folder's path is checked
by ``validate`` before any work, and a run with valid names keeps its files under run.root (and the data cache)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from harness.config import PATH_KEYS, ConfigError, check_path_component, config_hash, resolved_dict, validate
from harness.execute import run_dir_for
from tests.harness.conftest import SMOKE, compose_config

REPO = Path(__file__).resolve().parents[2]

HOSTILE = [
    ("lm/../../../escape", "'..' part"),
    ("..", "'..' part"),
    ("lm/.", "'.' part"),
    ("/tmp/escape", "absolute path"),
    ("C:/escape", "absolute path"),
    ("lm//x", "empty part"),
    ("lm/", "empty part"),
    ("", "is empty"),
    ("lm\\..\\x", "backslash"),
    ("lm\0x", "NUL"),
    ("glue/sst2/x", "more than 2"),
    (".hidden", "leading '.'"),
    ("-rf", "leading '.' or '-'"),
    ("lm x", "another character"),
    ("x" * 101, "over 100 characters"),
]


def with_value(key: str, value):
    cfg = compose_config(*SMOKE)
    cfg = OmegaConf.create(OmegaConf.to_container(cfg))  # untyped: any value, as a hand-written config could give
    OmegaConf.update(cfg, key, value)
    return cfg


@pytest.mark.parametrize("key", sorted(PATH_KEYS))
@pytest.mark.parametrize("value, why", HOSTILE, ids=[repr(v[:12]) for v, _ in HOSTILE])
def test_a_value_that_could_leave_run_root_fails_naming_key_value_and_what_is_allowed(key, value, why):
    if key != "task.name" and value == "glue/sst2/x":
        value, why = "lm/x", "more than 1"
    with pytest.raises(ConfigError) as err:
        validate(with_value(key, value))
    message = str(err.value)
    assert message.startswith(f"{key}={value!r}") and why in message, message
    assert "letters, digits, '_', '.' and '-'" in message and "<run.root>/<task.name>" in message


@pytest.mark.parametrize("value", ["lm", "glue/sst2", "lra/listops", "mlm"])
def test_task_names_with_one_slash_are_path_safe(value):
    check_path_component("task.name", value, *PATH_KEYS["task.name"])


def test_every_validated_run_folder_is_inside_run_root(tmp_path):
    """Whatever ``validate`` accepts, ``run_dir_for`` stays under run.root (checked on the resolved paths)."""
    root = tmp_path / "runs"
    for overrides in ([], ["task=glue/sst2"], ["task=lra/listops"], ["task=mlm", "attention=vanilla"]):
        cfg = compose_config(*SMOKE, f"run.root={root}", *overrides)
        folder = run_dir_for(validate(cfg), config_hash(resolved_dict(cfg)))
        assert folder.resolve().is_relative_to(root.resolve()), folder
    for value, _ in HOSTILE:
        cfg = with_value("task.name", value)
        with pytest.raises(ConfigError):
            run_dir_for(validate(cfg), "0" * 64)


def files_under(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


@pytest.mark.slow
def test_no_run_writes_outside_run_root(tmp_path):
    """A real run (smoke scale, 2 updates) started in an empty folder writes under run.root and the data cache
    only; the same run with task.name=lm/../../../escape stops with one line naming the key, and writes nothing
    but Hydra's own folder under run.root."""
    work, root, cache = tmp_path / "work" / "a" / "b" / "c", tmp_path / "root", tmp_path / "cache"
    work.mkdir(parents=True)
    env = {**os.environ, "ATTENTION_ZOO_CACHE": str(cache), "WANDB_MODE": "disabled",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "harness.run", *SMOKE, "trainer.max_steps=2", "trainer.eval_every=2",
               f"run.root={root}"]

    done = subprocess.run([*command, "task.name=lm/../../../escape"], cwd=work, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode != 0 and "task.name='lm/../../../escape' has a '..' part" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr  # a message, not a traceback
    assert not any(p.is_file() for p in files_under(tmp_path) if not p.is_relative_to(root)), files_under(tmp_path)
    assert not any(p.is_file() and "_hydra" not in p.parts for p in files_under(root)), files_under(root)

    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    written = {p for p in files_under(tmp_path) if p.is_file()}
    assert any(p.name == "record.json" for p in written)
    outside = {p for p in written if not (p.is_relative_to(root) or p.is_relative_to(cache))}
    assert not outside, outside
