"""Byte-level BPE: RoBERTa's special tokens and templates, save/load round trips, truncation."""
import pytest

from tasks.tokenizers import BpeTokenizer

TEXTS = ["the quick brown fox jumps over the lazy dog .", "a lazy dog sleeps all day .",
         "Ünïcödé and emoji 🙂 are bytes too ."] * 20


@pytest.fixture(scope="module")
def tokenizer() -> BpeTokenizer:
    return BpeTokenizer.train(TEXTS, vocab_size=320)


def test_specials_and_templates(tokenizer):
    ids = (tokenizer.bos_id, tokenizer.pad_id, tokenizer.eos_id, tokenizer.unk_id, tokenizer.mask_id)
    assert ids == (0, 1, 2, 3, 4)
    assert tokenizer.vocab_size == 320
    [single] = tokenizer.encode_examples(["a lazy dog"], None, max_len=64)
    [pair] = tokenizer.encode_examples(["a lazy dog"], ["the fox"], max_len=64)
    [a], [b] = tokenizer.encode(["a lazy dog"]), tokenizer.encode(["the fox"])
    assert single == [0, *a, 2] and pair == [0, *a, 2, 2, *b, 2]
    assert tokenizer.decode(tokenizer.encode([TEXTS[2]])[0]) == TEXTS[2]  # lossless on any bytes


def test_truncation_keeps_the_template(tokenizer):
    [pair] = tokenizer.encode_examples([TEXTS[0] * 5], ["short"], max_len=16)
    assert len(pair) == 16 and pair[0] == 0 and pair[-1] == 2 and pair.count(2) == 3
    assert len(tokenizer.encode_examples([TEXTS[0] * 5], None, max_len=16)[0]) == 16
    assert len(tokenizer.encode([TEXTS[0] * 5])[0]) > 16  # truncation does not stick


def test_save_and_load_round_trip(tokenizer, tmp_path):
    tokenizer.save(tmp_path)
    for loaded in (BpeTokenizer.load(tmp_path),
                   BpeTokenizer.from_vocab_merges(tmp_path / "vocab.json", tmp_path / "merges.txt")):
        assert loaded.encode(TEXTS) == tokenizer.encode(TEXTS)
        assert loaded.encode_examples(TEXTS[:2], TEXTS[1:3], 12) == tokenizer.encode_examples(TEXTS[:2], TEXTS[1:3], 12)


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="too small"):
        BpeTokenizer.train(TEXTS, vocab_size=100)
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        BpeTokenizer.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="vocab.json and merges.txt"):
        BpeTokenizer.from_vocab_merges(tmp_path / "vocab.json", tmp_path / "merges.txt")
