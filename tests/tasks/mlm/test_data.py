"""Masked-LM data: packing whole lines, files and built-in sources, fixed evaluation masks, resumable batches."""
import pytest
import torch

import tasks
from tasks.base import IGNORE_INDEX
from tasks.mlm.data import pack_complete
from tasks.tokenizers import BpeTokenizer
from tests.tasks.rewrite import rewrite_in_place


def test_pack_complete_keeps_lines_whole_and_covers_the_stream():
    lengths = [3, 4, 2, 10, 1, 6, 6]
    starts, sizes = pack_complete(lengths, capacity=6)
    assert (starts, sizes) == ([0, 3, 9, 15, 20, 26], [3, 6, 6, 5, 6, 6])
    assert all(s + n == nxt for s, n, nxt in zip(starts, sizes, starts[1:]))  # contiguous
    assert starts[-1] + sizes[-1] == sum(lengths) and max(sizes) <= 6


def write_wikitext(folder, suffix):
    lines = {"train": [" = Alpha = ", "", " the cat sat on the mat . the dog ran .", " a bird sang a song ."] * 30,
             "valid": [" the dog sat on a mat ."] * 5, "test": [" a cat ran ."] * 5}
    for split, text in lines.items():
        (folder / f"wiki.{split}.{suffix}").write_text("\n".join(text) + "\n")


@pytest.fixture
def files_task(tmp_path):
    write_wikitext(tmp_path, "raw")
    cfg = {"name": "mlm", "seq_len": 16, "tokenizer": {"vocab_size": 300},
           "data": {"source": "files", "path": str(tmp_path), "cache_dir": str(tmp_path / "cache")}}
    task = tasks.build(cfg)
    task.prepare()
    return task


def test_blocks_start_with_bos_and_hold_whole_lines(files_task):
    batch = files_task.collate("valid", [0, 1])
    tokens, tok = batch.inputs["tokens"], files_task.tokenizer
    assert (tokens[:, 0] == tok.bos_id).all() and tokens.shape[1] <= 16
    original = torch.where(batch.inputs["predict_mask"], 0, tokens)
    assert (original == tok.eos_id).sum(dim=1).ge(1).all()  # every block ends a line
    assert files_task.num_examples("train") > 0 and batch.n_targets == len(batch.targets)


def test_evaluation_masks_do_not_depend_on_batching(files_task):
    whole = files_task.collate("valid", [0, 1, 2, 3])
    alone = files_task.collate("valid", [2])
    assert torch.equal(whole.inputs["tokens"][2], alone.inputs["tokens"][0])


def test_training_batches_resume_exactly(files_task):
    stream = files_task.train_batches(batch_size=2, seed=7)
    batches = [next(stream) for _ in range(4)]
    resumed = next(files_task.train_batches(batch_size=2, seed=7, start=3))
    assert torch.equal(resumed.inputs["tokens"], batches[3].inputs["tokens"])
    assert torch.equal(resumed.targets, batches[3].targets)
    assert (batches[0].targets != IGNORE_INDEX).all()  # targets are the picked tokens only


def test_tokenizer_is_saved_and_can_be_loaded_as_vocab_merges(files_task, tmp_path):
    files_task.save_artifacts(tmp_path / "run")
    folder = tmp_path / "run" / "tokenizer"
    assert BpeTokenizer.load(folder).encode(["the cat"]) == files_task.tokenizer.encode(["the cat"])
    cfg = {"name": "mlm", "seq_len": 16, "data": {"source": "files", "path": str(tmp_path), "cache_dir": str(tmp_path)},
           "tokenizer": {"vocab": str(folder / "vocab.json"), "merges": str(folder / "merges.txt")}}
    task = tasks.build(cfg)
    task.prepare()
    assert task.tokenizer.encode(["the cat sat"]) == files_task.tokenizer.encode(["the cat sat"])


def test_tokenised_wikitext_files_work_too(tmp_path):
    write_wikitext(tmp_path, "tokens")
    task = tasks.build({"name": "mlm", "seq_len": 16, "tokenizer": {"vocab_size": 300},
                        "data": {"source": "files", "path": str(tmp_path), "cache_dir": str(tmp_path / "c")}})
    task.prepare()
    assert 1 <= task.num_examples("test") < 5  # 5 short lines packed into fewer blocks


def test_missing_files_and_bad_settings_fail_clearly(tmp_path):
    task = tasks.build({"name": "mlm", "data": {"source": "files", "path": str(tmp_path / "nowhere")}})
    with pytest.raises(FileNotFoundError, match="wiki.train.tokens"):
        task.prepare()
    with pytest.raises(ValueError, match="mask_prob"):
        tasks.build({"name": "mlm", "mask_prob": 1.5})
    write_wikitext(tmp_path, "raw")
    task = tasks.build({"name": "mlm", "tokenizer": {"vocab": "v.json"},
                        "data": {"source": "files", "path": str(tmp_path), "cache_dir": str(tmp_path)}})
    with pytest.raises(ValueError, match="go together"):
        task.prepare()


@pytest.mark.parametrize("suffix", ["raw", "tokens"])
def test_a_file_replaced_in_place_is_read_again(tmp_path, suffix):
    """The tokenizer (trained on train) and the packed blocks are cached by the files' contents: a same-sized
    replacement with the same modification time is a new key, for the BPE as for the blocks."""
    write_wikitext(tmp_path, suffix)

    def prepared(cache: str):
        task = tasks.build({"name": "mlm", "seq_len": 16, "tokenizer": {"vocab_size": 300},
                            "data": {"source": "files", "path": str(tmp_path), "cache_dir": str(tmp_path / cache)}})
        task.prepare()
        return task

    first = prepared("cache")
    rewrite_in_place(tmp_path / f"wiki.train.{suffix}", b" the cat sat", b" zzz qqq xxx")
    rewrite_in_place(tmp_path / f"wiki.valid.{suffix}", b" the dog sat", b" a cat ran  ")
    again, fresh = prepared("cache"), prepared("fresh-cache")
    assert again.tokenizer.encode(["zzz qqq"]) == fresh.tokenizer.encode(["zzz qqq"])
    assert first.tokenizer.encode(["zzz qqq"]) != fresh.tokenizer.encode(["zzz qqq"])
    for split in ("train", "valid", "test"):
        assert torch.equal(again.data[split].stream, fresh.data[split].stream), split
    assert not torch.equal(again.data["valid"].stream, first.data["valid"].stream)
