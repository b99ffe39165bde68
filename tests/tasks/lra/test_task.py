"""The LRA task on the harness interface: splits, batches, pooling, heads, config errors, smoke runs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import tasks
from harness.config import ConfigError, validate
from harness.execute import execute
from tasks.data.textfile import DataFormatError
from tasks.lra.data.examples import BYTE_OFFSET, Examples
from tasks.lra.model import pool
from tasks.lra.source import downsample
from tasks.lra.splits import load_or_make_splits, make_splits
from tests.tasks.lra import fixtures
from tests.tasks.lra.conftest import CONF_DIR, SMOKE, compose_config

TASKS = ("listops", "text", "retrieval", "image", "pathfinder", "pathx")


def smoke_task(name: str, cache, *overrides: str) -> tasks.Task:
    cfg = compose_config(*SMOKE, f"task=lra/{name}", f"task.data.cache_dir={cache}", *overrides)
    task = tasks.build(OmegaConf.to_container(cfg.task, resolve=True))
    task.prepare()
    return task


def _examples(n: int, prefix: str) -> Examples:
    sequences = [np.arange(i + 1, dtype=np.int16) for i in range(n)]
    return Examples((sequences,), np.arange(n) % 2, [f"{prefix}{i}" for i in range(n)])


# ---------------------------------------------------------------------------------------------- splits
def test_splits_are_deterministic_and_disjoint():
    natural = {"all": _examples(100, "x")}
    first, again = make_splits(natural, 0.1, 0.2, seed=0), make_splits(natural, 0.1, 0.2, seed=0)
    assert {k: len(v) for k, v in first.items()} == {"train": 70, "valid": 10, "test": 20}
    assert all(first[k].ids == again[k].ids for k in first)
    assert not set(first["train"].ids) & set(first["valid"].ids) | set(first["test"].ids) & set(first["valid"].ids)
    assert make_splits(natural, 0.1, 0.2, seed=1)["test"].ids != first["test"].ids


def test_text_without_validation_fraction_validates_on_test():
    splits = make_splits({"train": _examples(10, "tr"), "test": _examples(4, "te")}, 0.0, 0.1, seed=0)
    assert splits["valid"].ids == splits["test"].ids and len(splits["train"]) == 10


def test_recorded_splits_are_followed(tmp_path):
    natural = {"train": _examples(10, "tr"), "test": _examples(4, "te")}
    path = tmp_path / "splits.json"
    made = load_or_make_splits(natural, path, 0.2, 0.1, seed=0)
    recorded = json.loads(path.read_text())
    assert recorded["valid"] == made["valid"].ids
    recorded["valid"], recorded["train"] = recorded["train"][:2], recorded["train"][2:] + recorded["valid"]
    path.write_text(json.dumps(recorded))
    followed = load_or_make_splits(natural, path, 0.2, 0.1, seed=0)
    assert followed["valid"].ids == recorded["valid"]
    path.write_text(json.dumps({**recorded, "test": ["nope"]}))
    with pytest.raises(ValueError, match="splits.json: split 'test' lists 1 example"):
        load_or_make_splits(natural, path, 0.2, 0.1, seed=0)


# --------------------------------------------------------------------------------------- data + batches
def test_files_source_reads_a_nested_release(tmp_path, lra_cache):
    rows = {"train": [("( ( [MAX 2 ) 9 ] )", "9")] * 8, "valid": [("( ( [MIN 2 ) 9 ] )", "2")] * 4}
    fixtures.listops_release(tmp_path / "copy", rows)
    task = smoke_task("listops", lra_cache, "task.data.source=files", f"task.data.path={tmp_path / 'copy'}")
    assert [task.num_examples(s) for s in ("train", "valid", "test")] == [8, 4, 8]
    cache = task.describe()["cache_folder"]
    assert json.loads(open(f"{cache}/splits.json").read())["valid"][0] == "basic_val.tsv:2"


def test_an_empty_evaluation_file_is_named(tmp_path):
    """Before: ``RuntimeError: max(): Expected reduction dim`` from the model; now the file and line."""
    folder = fixtures.listops_release(tmp_path / "copy", {"train": [("( [MAX 2 9 ] )", "9")] * 4})
    (folder / "basic_val.tsv").write_text("Source\tTarget\n")
    with pytest.raises(DataFormatError, match=r"basic_val.tsv:2: end of file with no example; expected the header"):
        smoke_task("listops", tmp_path / "cache", "task.data.source=files", f"task.data.path={tmp_path / 'copy'}")


@pytest.mark.parametrize(("name", "override", "message"), [
    ("text", "task.valid_fraction=0.01", "the valid split is empty: task.valid_fraction=0.01 of the 12 examples"),
    ("pathfinder", "task.test_fraction=0.0", "the test split is empty: task.test_fraction=0.0 of the 10 examples"),
])
def test_a_carved_split_left_empty_names_the_fraction(tmp_path, name, override, message):
    if name == "text":
        reviews = {"pos": {f"{i}_9.txt": b"good" for i in range(6)}, "neg": {f"{i}_1.txt": b"bad" for i in range(6)}}
        fixtures.imdb(tmp_path / "copy", {"train": reviews, "test": reviews})
    else:
        images = {0: [(np.full((32, 32), i), i % 2) for i in range(10)]}
        fixtures.pathfinder_release(tmp_path / "copy", images, difficulty="curv_baseline")  # the smoke scale's
    with pytest.raises(DataFormatError, match=message):
        smoke_task(name, tmp_path / "cache", "task.data.source=files", f"task.data.path={tmp_path / 'copy'}", override)


def test_collate_pads_right_and_masks(lra_cache):
    task = smoke_task("listops", lra_cache)
    lengths = [task.collate("train", [i]).inputs["tokens"].shape[1] for i in range(task.num_examples("train"))]
    pick = [int(np.argmin(lengths)), int(np.argmax(lengths))]
    batch = task.collate("train", pick)
    tokens, mask = batch.inputs["tokens"], batch.inputs["padding_mask"]
    assert tokens.shape == (2, max(lengths)) and batch.n_tokens == min(lengths) + max(lengths)
    assert (tokens[mask] == 0).all() and (tokens[~mask] > 0).all() and mask[0, min(lengths):].all()
    assert batch.targets.dtype == torch.long and batch.n_targets == 2


def test_retrieval_batches_pairs(lra_cache):
    task = smoke_task("retrieval", lra_cache)
    batch = task.collate("valid", [0, 1, 2])
    assert batch.inputs["tokens"].shape[:2] == (3, 2)
    model = task.build_model({"name": "vanilla"}, {"d_model": 16, "n_layers": 1, "n_heads": 2})
    assert model(**batch.inputs).shape == (3, 2)


def test_image_tasks_have_fixed_length_and_no_mask(lra_cache):
    task = smoke_task("image", lra_cache)
    batch = task.collate("test", list(range(4)))
    assert batch.inputs["tokens"].shape == (4, 64) and "padding_mask" not in batch.inputs
    assert task.describe()["splits"]["train"]["examples"] == 30  # 40 minus the 25% validation share


# ------------------------------------------------------------------------------------------- pooling
def test_pooling_ignores_padding():
    hidden = torch.randn(2, 5, 3)
    mask = torch.tensor([[False, False, True, True, True], [False] * 5])
    assert torch.allclose(pool(hidden, mask, "mean")[0], hidden[0, :2].mean(0))
    last = pool(hidden, mask, "last")
    assert torch.equal(last[0], hidden[0, 1]) and torch.equal(last[1], hidden[1, 4])
    assert torch.equal(pool(hidden, mask, "cls"), hidden[:, 0])
    assert torch.allclose(pool(hidden, None, "mean"), hidden.mean(1))


@pytest.mark.parametrize("pooling", ["mean", "cls", "last"])
def test_padding_does_not_change_the_prediction(lra_cache, pooling):
    task = smoke_task("text", lra_cache, f"task.pooling={pooling}")
    torch.manual_seed(0)
    model = task.build_model({"name": "elu"}, {"d_model": 16, "n_layers": 1, "n_heads": 2, "norm": "layernorm"}).eval()
    alone = task.collate("train", [0])
    tokens = alone.inputs["tokens"]
    padded = torch.cat([tokens, torch.zeros(1, 7, dtype=torch.long)], dim=1)
    mask = padded == 0
    assert torch.allclose(model(tokens), model(padded, mask), atol=1e-5)


# ---------------------------------------------------------------------------------------- config errors
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("task.pooling=max", "task.pooling='max' is not valid; valid choices: ['mean', 'cls', 'last']"),
        ("task.seq_len=100", "task.seq_len=100 must equal the tokens per image of lra/image"),
        ("+task.builtin.colour=red", "unknown key(s) ['colour'] under task.builtin for lra/image"),
    ],
)
def test_bad_config_fails_naming_the_key(lra_cache, override, message):
    with pytest.raises((ValueError, ConfigError)) as err:
        smoke_task("image", lra_cache, override)
    assert message in str(err.value)


def test_unknown_lra_task_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown LRA task 'lra/cifar'; valid choices: \['lra/listops'"):
        tasks.build({"name": "lra/cifar"})


def test_missing_files_folder(tmp_path, lra_cache):
    with pytest.raises(FileNotFoundError, match="is not a folder; expected a copy of the LRA data"):
        smoke_task("text", lra_cache, "task.data.source=files", f"task.data.path={tmp_path / 'none'}")


# ------------------------------------------------------------------------------------------ smoke runs
@pytest.mark.parametrize("name", TASKS)
def test_smoke_run(tmp_path, lra_cache, name):
    cfg = compose_config(*SMOKE, f"task=lra/{name}", f"task.data.cache_dir={lra_cache}", f"run.root={tmp_path}",
                         "attention=transnormer_t1")
    validate(cfg)
    record = execute(cfg)
    assert record["status"] == "completed" and record["task"] == f"lra/{name}"
    assert 0.0 <= record["metrics"]["test/accuracy"] <= 1.0
    splits = record["data"]["splits"]
    assert record["primary_metric"]["name"] == "accuracy" and 0 < splits["test"]["majority_baseline"] <= 1


def test_table6_sweeps_backends_and_tasks():
    compose_config("experiment=table6", "scale=smoke")  # composes
    sweep = OmegaConf.load(f"{CONF_DIR}/experiment/table6.yaml").hydra.sweeper.params
    assert set(sweep.attention.split(",")) >= {"vanilla", "performer", "cosformer", "flash", "ls", "transnormer_t1",
                                               "transnormer_t2", "elu"}
    assert set(sweep.task.split(",")) == {f"lra/{n}" for n in ("text", "listops", "retrieval", "pathfinder", "image")}


# -------------------------------------------------------------------------------------------- the cache
def test_downsample_averages_blocks():
    pixels = np.zeros((4, 4), dtype=np.int16)
    pixels[:2, :2], pixels[2:, 2:] = 100, 51  # one block bright, one block half-bright
    pixels[0, 0] = 104
    pooled = downsample(Examples(([pixels.reshape(-1) + BYTE_OFFSET],), np.zeros(1), ["a"]), side=4, factor=2)
    assert (pooled.inputs[0][0] - BYTE_OFFSET).tolist() == [101, 0, 0, 51]
    with pytest.raises(ValueError, match="task.pool=3 must divide the image side 4"):
        downsample(pooled, side=4, factor=3)


def test_builtin_data_is_generated_once(lra_cache):
    first = smoke_task("listops", lra_cache)
    marker = first.root / "generated.json"
    stamp = marker.stat().st_mtime_ns
    again = smoke_task("listops", lra_cache)
    assert again.root == first.root and marker.stat().st_mtime_ns == stamp
    other = smoke_task("listops", lra_cache, "task.data.seed=1")
    assert other.root != first.root
