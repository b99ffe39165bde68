"""The causal LM task: blocks cover the data exactly, batches are seeded/shardable/resumable, the model is tied."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import tasks
from tasks.base import IGNORE_INDEX
from tasks.lm import LanguageModel

WIKITEXT2 = Path(__file__).resolve().parents[3] / "shared" / "data" / "wikitext-2"
SMALL_CORPUS = {"train_tokens": 6000, "valid_tokens": 1000, "test_tokens": 1000, "n_nouns": 60, "n_verbs": 15,
                "n_adjectives": 15, "n_entities": 40}
TINY_MODEL = {"d_model": 16, "n_layers": 2, "n_heads": 2, "dropout": 0.0}


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    t = tasks.build({"name": "lm", "seq_len": 16, "data": {"cache_dir": str(cache)}, "corpus": SMALL_CORPUS})
    t.prepare()
    return t


def test_eval_blocks_predict_every_token_but_the_first_exactly_once(task):
    stream = task.corpus.splits["valid"].long()
    targets = [b.targets[b.targets != IGNORE_INDEX] for b in task.eval_batches("valid", batch_size=5)]
    assert torch.equal(torch.cat(targets), stream[1:])  # no dropped last batch, no dropped tail
    batches = list(task.eval_batches("valid", batch_size=5))
    last = batches[-1]
    assert sum(b.n_targets for b in batches) == len(stream) - 1
    if "padding_mask" in last.inputs:  # a short last block is padded, masked, and ignored by the loss
        assert torch.equal(last.inputs["padding_mask"], last.targets == IGNORE_INDEX)
    for b in batches:  # inputs are the targets shifted by one
        real = b.targets != IGNORE_INDEX
        assert torch.equal(b.inputs["tokens"][:, 1:][real[:, 1:]], b.targets[:, :-1][real[:, 1:]])


def test_train_batches_are_seeded_resumable_and_shard_across_ranks(task):
    def take(n, **kw):
        it = task.train_batches(batch_size=3, **kw)
        return [next(it).inputs["tokens"] for _ in range(n)]

    steps_per_epoch = task.num_examples("train") // 3
    full = take(steps_per_epoch + 4, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(full, take(steps_per_epoch + 4, seed=1)))
    assert not torch.equal(full[0], take(1, seed=2)[0])
    resumed = take(6, seed=1, start=steps_per_epoch - 2)  # crosses into the next epoch
    assert all(torch.equal(a, b) for a, b in zip(full[steps_per_epoch - 2 :], resumed))
    # the next epoch is a new permutation of the same examples
    assert not torch.equal(full[0], full[steps_per_epoch])
    # two ranks together see what one process with twice the batch sees, without overlap
    r0, r1 = (task.train_batches(batch_size=3, seed=1, rank=r, world_size=2) for r in (0, 1))
    single = task.train_batches(batch_size=6, seed=1)
    for _ in range(3):
        assert torch.equal(torch.cat([next(r0).inputs["tokens"], next(r1).inputs["tokens"]]),
                           next(single).inputs["tokens"])


def test_eval_shards_cover_the_split_once(task):
    ids = [b.targets for r in range(3) for b in task.eval_batches("test", 4, rank=r, world_size=3)]
    assert sum(int((t != IGNORE_INDEX).sum()) for t in ids) == len(task.corpus.splits["test"]) - 1


def test_model_ties_head_to_embeddings_and_loss_is_a_sum(task):
    model = task.build_model({"name": "transnormer_t2"}, TINY_MODEL)
    assert isinstance(model, LanguageModel) and model.head.weight is model.embed.weight
    assert model.backbone.config.causal
    batch = next(task.eval_batches("valid", 4))
    logits = model(**batch.inputs)
    assert logits.shape == (*batch.targets.shape, len(task.vocab))
    mean = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch.targets.flatten(), ignore_index=-100)
    assert torch.allclose(task.loss(logits, batch) / batch.n_targets, mean, rtol=1e-5)
    metrics = task.metrics()
    metrics.update(*task.metric_inputs(logits, batch))
    assert torch.allclose(metrics.compute()["perplexity"], mean.exp(), rtol=1e-4)


def test_describe_reports_the_corpus_best_achievable_perplexity(task):
    facts = task.describe()
    assert facts["vocab_size"] == len(task.vocab) and facts["vocab_size"] % 8 == 0
    assert facts["corpus"]["test"]["oracle_ppl"] > 1


@pytest.mark.skipif(not WIKITEXT2.is_dir(), reason="the real WikiText-2 files are not available")
def test_real_wikitext2_through_the_files_path_trains(tmp_path):
    """Official files (valid stands in for train) -> the files path -> a few training steps that learn."""
    folder = tmp_path / "wt2"
    folder.mkdir()
    for split, source in (("train", "valid"), ("valid", "valid"), ("test", "test")):
        (folder / f"wiki.{split}.tokens").symlink_to(WIKITEXT2 / f"wiki.{source}.tokens")
    task = tasks.build({"name": "lm", "seq_len": 64,
                        "data": {"source": "files", "path": str(folder), "cache_dir": str(tmp_path / "cache")}})
    task.prepare()
    assert len(task.corpus.splits["valid"]) == 217_646 and len(task.corpus.splits["test"]) == 245_569  # PAPER.md
    assert task.vocab.symbols[:3] == ["<pad>", "<eos>", "<unk>"] and "<unk>" not in task.vocab.symbols[3:]
    torch.manual_seed(0)
    model = task.build_model({"name": "transnormer_t2", "block_size": 32, "chunk_size": 32}, TINY_MODEL)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for batch in [b for _, b in zip(range(8), task.train_batches(batch_size=4, seed=0))]:
        optimizer.zero_grad()
        loss = task.loss(model(**batch.inputs), batch) / batch.n_targets
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]


@pytest.mark.skipif(not WIKITEXT2.is_dir(), reason="the real WikiText-2 files are not available")
def test_real_wikitext2_valid_and_test_become_three_splits_without_sharing_text(tmp_path):
    """./reproduce.sh --data wikitext-2: train = valid; test cut at an article heading into validation and test."""
    from tasks.data.wikitext import ARTICLE_HEADING, read_words, resplit_valid_test

    folder = resplit_valid_test(WIKITEXT2, tmp_path / "wikitext-2")
    lines = {split: (folder / f"wiki.{split}.tokens").read_text(encoding="utf-8").splitlines(keepends=True)
             for split in ("train", "valid", "test")}
    assert "".join(lines["train"]) == (WIKITEXT2 / "wiki.valid.tokens").read_text(encoding="utf-8")
    assert "".join(lines["valid"] + lines["test"]) == (WIKITEXT2 / "wiki.test.tokens").read_text(encoding="utf-8")
    assert ARTICLE_HEADING.match(lines["test"][0].rstrip("\n"))  # the cut is an article boundary
    sizes = {split: sum(len(w) for w in read_words(folder / f"wiki.{split}.tokens")) for split in lines}
    assert sizes["train"] == 217_646 and abs(sizes["valid"] - sizes["test"]) < 0.1 * sizes["train"]
    before = (folder / "wiki.test.tokens").stat().st_mtime_ns
    resplit_valid_test(WIKITEXT2, folder)  # unchanged content: not rewritten (the token cache keys on mtimes)
    assert (folder / "wiki.test.tokens").stat().st_mtime_ns == before
