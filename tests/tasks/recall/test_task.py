"""The recall task on the harness interface: config checks, batches, loss and accuracy masking, smoke runs."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

import tasks
from harness.config import ConfigError, validate
from harness.execute import execute
from tasks.base import IGNORE_INDEX
from tests.harness.conftest import CONF_DIR, SMOKE, compose_config

TASKS = ("mqar", "noisy", "selective_copy")
# the causal backends the recall sweep runs (conf/experiment/recall.yaml)
BACKENDS = ("vanilla", "elu", "norm_attention", "transnormer_t1", "transnormer_t2", "lightning", "retnet", "gla",
            "deltanet")


def smoke_task(name: str, cache, *overrides: str) -> tasks.Task:
    cfg = compose_config(*SMOKE, f"task=recall/{name}", f"task.data.cache_dir={cache}", *overrides)
    task = tasks.build(OmegaConf.to_container(cfg.task, resolve=True))
    task.prepare()
    return task


# ------------------------------------------------------------------------------------------------ config
def test_config_errors_name_the_key_and_the_choices():
    with pytest.raises(ConfigError, match=r"unknown recall task 'recall/nope'; valid choices: \['recall/mqar'"):
        validate(compose_config(*SMOKE, "task=recall/mqar", "task.name=recall/nope"))
    with pytest.raises(ConfigError, match=r"task.frac_noise is not a knob of recall/mqar; its knobs: \['vocab_size'"):
        validate(compose_config(*SMOKE, "task=recall/mqar", "+task.frac_noise=0.5"))
    with pytest.raises(ConfigError, match=r"task.filler='noise' is not valid; valid choices: \['random', 'non_keys'"):
        validate(compose_config(*SMOKE, "task=recall/mqar", "task.filler=noise"))
    with pytest.raises(ConfigError, match="task.seq_len=16 is too short for task.num_kv_pairs=8"):
        validate(compose_config(*SMOKE, "task=recall/mqar", "task.seq_len=16", "task.num_kv_pairs=8"))
    with pytest.raises(ConfigError, match=r"task.data.source='files' is not valid .* valid choices: \['builtin'\]"):
        validate(compose_config(*SMOKE, "task=recall/mqar", "task.data.source=files", "task.data.path=/tmp"))
    with pytest.raises(ConfigError, match="task.test_examples=0 must be positive"):
        validate(compose_config(*SMOKE, "task=recall/noisy", "task.test_examples=0"))


def test_a_null_knob_takes_the_generators_default():
    cfg = tasks.validate({"name": "recall/mqar", "vocab_size": 256, "seq_len": 64})
    assert cfg.params().num_kv_pairs == 4 and cfg.params().filler == "random"


# ----------------------------------------------------------------------------------------- data, batches
@pytest.mark.parametrize("name", TASKS)
def test_batches_and_describe(recall_cache, name):
    task = smoke_task(name, recall_cache)
    batch = task.collate("valid", [0, 1, 2])
    tokens, targets = batch.inputs["tokens"], batch.targets
    assert tokens.dtype == targets.dtype == torch.long and tokens.shape == targets.shape
    assert tokens.shape[1] == task.params.input_len and "padding_mask" not in batch.inputs
    assert batch.n_targets == int((targets != IGNORE_INDEX).sum()) > 0 and batch.n_tokens == tokens.numel()
    facts = task.describe()
    assert facts["params"]["vocab_size"] == task.params.vocab_size and facts["input_len"] == task.params.input_len
    assert {s: facts["splits"][s]["examples"] for s in ("train", "valid", "test")} == {
        "train": task.cfg.train_examples, "valid": task.cfg.valid_examples, "test": task.cfg.test_examples}


def test_data_are_generated_once_per_key(recall_cache):
    first = smoke_task("mqar", recall_cache)
    stamp = (first.folder / "tensors.pt").stat().st_mtime_ns
    again = smoke_task("mqar", recall_cache, "trainer.lr=1e-2")  # not a data key
    assert again.folder == first.folder and (again.folder / "tensors.pt").stat().st_mtime_ns == stamp
    assert smoke_task("mqar", recall_cache, "task.data.seed=1").folder != first.folder
    assert smoke_task("mqar", recall_cache, "task.power_a=1.0").folder != first.folder


def test_noisy_recall_trains_on_every_next_token(recall_cache):
    """MAD trains noisy recall on every next token and evaluates on the answers; train_on=answers trains on those."""
    task = smoke_task("noisy", recall_cache)
    plain, train = task.collate("train", [0, 1]), task.collate_train([0, 1], seed=0, position=0)
    assert (train.targets[:, :-1] == plain.inputs["tokens"][:, 1:]).all()
    assert (train.targets[:, -1] == plain.targets[:, -1]).all() and train.n_targets == train.targets.numel()
    answers = smoke_task("noisy", recall_cache, "task.train_on=answers").collate_train([0, 1], seed=0, position=0)
    assert answers.targets.equal(plain.targets)


# ------------------------------------------------------------------------------------------ loss, metrics
def test_loss_and_accuracy_see_only_the_answers(recall_cache):
    task = smoke_task("mqar", recall_cache)
    batch = task.collate("test", list(range(4)))
    vocab = task.params.vocab_size + 1
    answers = batch.targets != IGNORE_INDEX
    logits = torch.randn(*batch.targets.shape, vocab)
    right = logits.clone()
    right[answers] = F.one_hot(batch.targets[answers], vocab).float() * 50  # right at every answer
    wrong_elsewhere = right.clone()
    wrong_elsewhere[~answers] = F.one_hot(torch.zeros_like(batch.targets[~answers]), vocab).float() * 50

    def accuracy(outputs: torch.Tensor) -> float:
        metrics = task.metrics()
        metrics.update(*task.metric_inputs(outputs, batch))
        return float(metrics.compute()["accuracy"])

    assert accuracy(right) == accuracy(wrong_elsewhere) == 1.0
    assert task.loss(right, batch) == pytest.approx(float(task.loss(wrong_elsewhere, batch)), abs=1e-6)
    expected = F.cross_entropy(logits[answers], batch.targets[answers], reduction="sum")
    assert task.loss(logits, batch) == pytest.approx(float(expected), rel=1e-5)
    half = right.clone()
    first_answer = answers.nonzero()[: int(answers.sum()) // 2]
    half[first_answer[:, 0], first_answer[:, 1]] = -half[first_answer[:, 0], first_answer[:, 1]]
    assert accuracy(half) == pytest.approx(0.5)


def test_the_model_is_a_causal_lm_with_an_unused_padding_row(recall_cache):
    task = smoke_task("noisy", recall_cache)  # token 0 is a key here: it must not be the zero padding row
    model = task.build_model({"name": "vanilla"}, {"d_model": 16, "n_layers": 1, "n_heads": 1}).eval()
    assert model.embed.num_embeddings == task.params.vocab_size + 1 and model.embed.padding_idx == task.pad
    assert model.embed.weight[0].abs().sum() > 0 and model.backbone.config.causal
    tokens = task.collate("valid", [0]).inputs["tokens"]
    changed = tokens.clone()
    changed[0, -1] = (changed[0, -1] + 1) % task.params.vocab_size
    assert torch.allclose(model(tokens)[:, :-1], model(changed)[:, :-1], atol=1e-5)  # the past ignores the future


@pytest.mark.parametrize("backend, grows", [("vanilla", True), ("norm_attention", False), ("gla", False)])
def test_the_record_holds_the_measured_decoding_state(recall_cache, backend, grows):
    sizes = {}
    for length in (32, 64):
        task = smoke_task("mqar", recall_cache, f"task.seq_len={length}")
        model = task.build_model({"name": backend}, {"d_model": 16, "n_layers": 2, "n_heads": 1})
        state = task.describe_model(model)["decoding_state"]
        assert state["tokens"] == length and state["dtype"] == "float32"
        sizes[length] = state["bytes"]
    if backend == "norm_attention":  # 2 layers of a d x d float32 state, whatever the length
        assert sizes[32] == 2 * 16 * 16 * 4
    assert (sizes[64] > sizes[32]) == grows  # a key-value cache grows with the context; a recurrent state does not


# ------------------------------------------------------------------------------------------- smoke runs
@pytest.mark.parametrize("name", TASKS)
def test_smoke_run_records_accuracy(tmp_path, recall_cache, name):
    cfg = compose_config(*SMOKE, f"task=recall/{name}", f"task.data.cache_dir={recall_cache}", f"run.root={tmp_path}",
                         "attention=transnormer_t2")
    record = execute(cfg)
    assert record["status"] == "completed" and record["task"] == f"recall/{name}"
    assert record["primary_metric"]["name"] == "accuracy" and record["primary_metric"]["mode"] == "max"
    assert 0.0 <= record["metrics"]["test/accuracy"] <= 1.0 and 0.0 <= record["metrics"]["valid/accuracy"] <= 1.0
    assert record["data"]["task"] == f"recall/{name}" and record["data"]["splits"]["test"]["answers"] > 0
    assert record["data"]["decoding_state"]["bytes"] > 0
    assert execute(cfg)["status"] == "completed"  # the same run again: skipped as completed


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_swept_backend_builds_for_mqar(backend):
    validate(compose_config(*SMOKE, "task=recall/mqar", f"attention={backend}"))  # builds on the meta device
    validate(compose_config("scale=cpu", "task=recall/mqar", f"attention={backend}", "model.d_model=128"))


def test_the_recall_experiment_composes_and_sweeps_the_causal_backends():
    cfg = compose_config("experiment=recall", "scale=smoke")
    assert cfg.reproduce.order == 15 and "title" in cfg.report
    assert cfg.task.seq_len == 8 * cfg.task.num_kv_pairs  # the length follows the swept number of pairs
    sweep = OmegaConf.load(f"{CONF_DIR}/experiment/recall.yaml").hydra.sweeper.params
    assert tuple(sweep.attention.split(",")) == BACKENDS and sweep.task == "recall/mqar"
    for scale in ("smoke", "cpu", "paper"):
        for task in TASKS:
            validate(compose_config(f"scale={scale}", f"task=recall/{task}"))
