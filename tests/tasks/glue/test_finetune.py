"""Smoke pretraining (task=mlm) then GLUE fine-tuning through the harness: init_from, weights, mismatches,
the real CoLA / SST-2 files."""
import json
import os
from pathlib import Path

import pytest
import torch

import tasks
from harness.execute import execute
from tests.harness.conftest import compose_config

REAL_GLUE = Path(__file__).resolve().parents[4] / "shared" / "data" / "glue"
SMOKE = ("scale=smoke", "logger=none", "trainer.progress=false")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One smoke masked-LM run (transnormer_t2), shared by the module's tests."""
    root = tmp_path_factory.mktemp("runs")
    previous = {k: os.environ.get(k) for k in ("ATTENTION_ZOO_CACHE", "WANDB_MODE")}
    os.environ["ATTENTION_ZOO_CACHE"] = str(root / "cache")
    os.environ["WANDB_MODE"] = "disabled"
    record = execute(compose_config(*SMOKE, "task=mlm", f"run.root={root}"))
    assert record["status"] == "completed" and record["metrics"]["valid/perplexity"] > 1
    yield root, Path(record["run_dir"])
    for key, value in previous.items():
        os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


def finetune(root, *overrides):
    return execute(compose_config(*SMOKE, f"run.root={root}", *overrides))  # init_from=auto looks under run.root


def test_mlm_run_saves_its_tokenizer(runs):
    _, pretrain = runs
    assert (pretrain / "tokenizer" / "tokenizer.json").is_file() and (pretrain / "checkpoints" / "best.pt").is_file()


@pytest.mark.parametrize("task", ["mnli", "stsb"])
def test_finetune_from_auto_found_pretraining(runs, task):
    root, pretrain = runs
    record = finetune(root, f"task=glue/{task}")
    assert record["status"] == "completed" and record["data"]["init_from"]["run_dir"] == str(pretrain)
    assert record["data"]["tokenizer"]["digest"] == json.loads((pretrain / "record.json").read_text())["data"][
        "tokenizer"]["digest"]
    metrics = record["metrics"]
    if task == "mnli":  # selected on matched, mismatched reported for the same checkpoint
        assert {"dev_matched/accuracy", "dev_mismatched/accuracy"} <= set(metrics)
    else:
        assert {"dev/pearson", "dev/spearman"} <= set(metrics)


def test_encoder_starts_from_the_pretrained_weights(runs):
    root, pretrain = runs
    config = json.loads((pretrain / "record.json").read_text())["config"]
    task = tasks.build({"name": "glue/sst2", "init_from": str(pretrain), "max_len": 32, "train_size": 20,
                        "dev_size": 10, "data": {"cache_dir": str(root / "cache")}})
    task.prepare()
    model = task.build_model(config["attention"], config["model"])
    saved = torch.load(pretrain / "checkpoints" / "best.pt", weights_only=True)["model"]
    for name, value in model.encoder.state_dict().items():
        assert torch.equal(value, saved[f"encoder.{name}"]), name
    assert model.out_proj.out_features == 2


def test_backend_or_size_mismatch_fails_clearly(runs):
    root, pretrain = runs
    with pytest.raises(FileNotFoundError, match="no completed masked-LM run under .*mlm/vanilla"):
        finetune(root, "task=glue/cola", "attention=vanilla")
    with pytest.raises(ValueError, match=r"model.d_model: this run 64 vs pretrained 32"):
        finetune(root, "task=glue/cola", f"task.init_from={pretrain}", "model.d_model=64")
    not_mlm = root / "elsewhere" / "a-cola-run"
    not_mlm.mkdir(parents=True)
    (not_mlm / "record.json").write_text(json.dumps({"task": "glue/cola", "status": "completed"}))
    with pytest.raises(ValueError, match="is a 'glue/cola' run, not a masked-LM"):
        finetune(root, "task=glue/rte", f"task.init_from={not_mlm}")


@pytest.mark.skipif(not REAL_GLUE.is_dir(), reason="real GLUE files not available")
@pytest.mark.parametrize(("task", "sizes"), [("cola", (8551, 1043)), ("sst2", (67349, 872))])
def test_real_glue_files_finetune_a_few_steps(runs, task, sizes):
    root, _ = runs
    record = finetune(root, f"task=glue/{task}", "task.data.source=files", f"task.data.path={REAL_GLUE}")
    assert record["status"] == "completed"
    assert (record["data"]["examples"]["train"], record["data"]["examples"]["dev"]) == sizes


def test_from_scratch_without_pretraining(tmp_path):
    task = tasks.build({"name": "glue/rte", "init_from": None, "train_size": 40, "dev_size": 20, "max_len": 24,
                        "tokenizer": {"vocab_size": 300}, "data": {"cache_dir": str(tmp_path)}})
    task.prepare()
    assert task.splits == ("dev", "dev") and task.primary_metric == "accuracy"
    model = task.build_model({"name": "vanilla"}, {"d_model": 16, "n_layers": 1, "n_heads": 2, "prenorm": False,
                                                   "positional": "learned", "dropout": 0.0})
    batch = next(task.train_batches(batch_size=8, seed=0))
    assert batch.inputs["tokens"].shape[1] <= 24 and batch.targets.shape == (8,)
    assert torch.isfinite(task.loss(model(**batch.inputs), batch))
    assert task.describe()["tokenizer"]["vocab_size"] == 300


def test_auto_prefers_the_same_seed_then_the_newest(tmp_path):
    from tasks.glue.pretrained import find_auto

    attention, model = {"name": "elu", "chunk_size": 64}, {"d_model": 32, "dropout": 0.1}
    for name, seed, finished, d_model in (("a", 0, "2026-01-02", 32), ("b", 1, "2026-01-01", 32),
                                          ("c", 2, "2026-01-03", 64)):
        run = tmp_path / "mlm" / "elu" / "cpu" / name
        (run / "checkpoints").mkdir(parents=True)
        (run / "checkpoints" / "best.pt").write_bytes(b"")
        config = {"seed": seed, "attention": attention, "model": {**model, "d_model": d_model, "dropout": 0.0}}
        (run / "record.json").write_text(json.dumps({"task": "mlm", "status": "completed", "finished": finished,
                                                     "config": config}))
    assert find_auto(tmp_path, attention, model, seed=1).run_dir.name == "b"
    assert find_auto(tmp_path, attention, model, seed=7).run_dir.name == "a"  # newest of the matching ones
    with pytest.raises(FileNotFoundError, match="no completed masked-LM run"):
        find_auto(tmp_path, {**attention, "chunk_size": 32}, model)


@pytest.mark.parametrize("name", ["cola", "mrpc", "mnli", "stsb"])
def test_majority_baseline_is_the_score_of_a_constant_prediction(tmp_path, name):
    task = tasks.build({"name": f"glue/{name}", "init_from": None, "train_size": 60, "dev_size": 30, "max_len": 24,
                        "tokenizer": {"vocab_size": 300}, "data": {"cache_dir": str(tmp_path)}})
    task.prepare()
    floor = task.describe()["majority_baseline"]
    assert set(floor) == set(task.format.eval_splits)
    train = task.data["train"].labels
    commonest = max(set(train), key=train.count)
    for split, value in floor.items():
        labels = task.data[split].labels
        if name in ("cola", "stsb"):  # a constant predictor is uncorrelated with the labels
            expected = 0.0
        elif name == "mrpc":  # F1 of the positive class
            share = labels.count(1) / len(labels)
            expected = 2 * share / (1 + share) if commonest == 1 else 0.0
        else:
            expected = labels.count(commonest) / len(labels)
        assert value == pytest.approx(expected, abs=1e-6), split
