"""The masked-LM and GLUE configs compose at every scale, and fine-tuning gets the pretraining model."""
import pytest

from harness.config import validate
from tests.harness.conftest import compose_config

TASKS = ("cola", "sst2", "mrpc", "qqp", "qnli", "rte", "mnli", "stsb")


def sections(*overrides):
    cfg = validate(compose_config(*overrides))
    return cfg.task, cfg.attention.as_mapping(), cfg.model, cfg.trainer


@pytest.mark.parametrize(("scale", "backend"), [("cpu", "transnormer_t2"), ("paper", "flash"), ("paper", "ls")])
def test_finetuning_model_equals_the_pretraining_model(scale, backend):
    _, attention, model, _ = sections("task=mlm", f"scale={scale}", f"attention={backend}")
    _, glue_attention, glue_model, _ = sections("task=glue/mnli", f"scale={scale}", f"attention={backend}")
    assert (glue_attention, glue_model) == (attention, model)
    if scale == "paper" and backend == "flash":
        assert model.n_layers == 24  # GAU layers: twice a transformer's
    if scale == "paper" and backend == "ls":
        assert (model.channel_mixer, attention["n_landmarks"]) == ("ffn", 32)


@pytest.mark.parametrize("task", TASKS)
def test_paper_recipe_per_task(task):
    cfg, _, model, trainer = sections(f"task=glue/{task}", "scale=paper")
    assert cfg.name == f"glue/{task}" and cfg.init_from == "auto" and (model.d_model, model.n_layers) == (768, 12)
    assert trainer.schedule == "polynomial" and trainer.lr in (1e-5, 2e-5)
    assert trainer.warmup_steps == round(0.06 * trainer.max_steps)
    epochs = trainer.max_steps * trainer.global_batch_size / cfg.train_size
    assert 9.99 < epochs < 10.1


def test_pretrain_root_and_seed_follow_the_run():
    cfg, *_ = sections("task=glue/qqp", "scale=cpu", "run.root=/somewhere/runs", "seed=4")
    assert (cfg.pretrain_root, cfg.pretrain_seed) == ("/somewhere/runs", 4)
