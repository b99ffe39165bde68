"""WikiText-format reading, the fairseq-style vocabulary, caching, and the built-in corpus."""
from __future__ import annotations

import json
import os
from collections import Counter

import pytest
import torch

from tasks.data.synthetic_lm import CorpusConfig, generate_corpus
from tasks.data.vocab import Vocabulary
from tasks.data.wikitext import DataFormatError, load_wikitext, read_words, split_paths
from tests.tasks.rewrite import rewrite_in_place

SMALL = CorpusConfig(train_tokens=6000, valid_tokens=3000, test_tokens=3000, n_nouns=60, n_verbs=15,
                     n_adjectives=15, n_entities=40)


def write_wikitext(folder, train=" = A = \n \n a b a c <unk> \n", valid=" a b \n", test=" c d \n"):
    folder.mkdir(parents=True, exist_ok=True)
    for split, text in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"wiki.{split}.tokens").write_text(text, encoding="utf-8")
    return folder


def test_vocabulary_orders_like_fairseq_and_maps_unk():
    vocab = Vocabulary.build(Counter({"b": 2, "a": 2, "c": 3, "<unk>": 1, "<eos>": 5}), pad_to_multiple=8)
    assert vocab.symbols[:6] == ["<pad>", "<eos>", "<unk>", "c", "a", "b"]  # count desc, ties alphabetical
    assert len(vocab) == 8 and vocab.symbols[6] == "madeupword0000"
    assert vocab.encode(["a", "zzz", "<unk>", "<eos>"]) == [4, 2, 2, 1]


def test_reader_appends_eos_per_line_including_blank_lines(tmp_path):
    folder = write_wikitext(tmp_path / "wt")
    lines = list(read_words(folder / "wiki.train.tokens"))
    assert lines == [["=", "A", "=", "<eos>"], ["<eos>"], ["a", "b", "a", "c", "<unk>", "<eos>"]]
    corpus = load_wikitext(folder, tmp_path / "cache")
    train = corpus.vocab.decode(corpus.splits["train"])
    assert train == [w for line in lines for w in line]
    assert corpus.vocab.decode(corpus.splits["test"]) == ["c", "<unk>", "<eos>"]  # d is not in train's vocabulary


def test_missing_folder_or_file_names_expected_files_and_download_command(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        split_paths(tmp_path / "nowhere")
    assert "wiki.train.tokens" in str(err.value) and "python -m harness.data download" in str(err.value)
    folder = write_wikitext(tmp_path / "wt")
    os.remove(folder / "wiki.valid.tokens")
    with pytest.raises(FileNotFoundError, match=r"lacks \['wiki.valid.tokens'\]"):
        load_wikitext(folder, tmp_path / "cache")


@pytest.mark.parametrize("bad, reason", [(b" a \xff b \n", "byte 0xff at column 4 is not valid UTF-8"),
                                         (b" a \x00 b \n", "NUL byte at column 4"),
                                         (b" a \x07 b \n", "control character '\\x07' at column 4")])
def test_malformed_line_names_file_and_line(tmp_path, bad, reason):
    folder = write_wikitext(tmp_path / "wt")
    path = folder / "wiki.valid.tokens"
    path.write_bytes(b" fine line \n \n" + bad)
    with pytest.raises(DataFormatError) as err:
        load_wikitext(folder, tmp_path / "cache")
    assert str(err.value).startswith(f"{path}:3: {reason}") and "; expected " in str(err.value)


def test_tokenised_cache_is_keyed_by_inputs(tmp_path):
    folder = write_wikitext(tmp_path / "wt")
    cache = tmp_path / "cache"
    first = load_wikitext(folder, cache)
    assert len(list(cache.iterdir())) == 1
    again = load_wikitext(folder, cache)  # from the cache
    assert torch.equal(first.splits["train"], again.splits["train"]) and first.vocab.symbols == again.vocab.symbols
    (folder / "wiki.train.tokens").write_text(" x y z \n", encoding="utf-8")
    changed = load_wikitext(folder, cache)  # a changed file is a new key, never a stale hit
    assert changed.vocab.decode(changed.splits["train"]) == ["x", "y", "z", "<eos>"]
    assert len(list(cache.iterdir())) == 2
    assert len(load_wikitext(folder, cache, pad_to_multiple=1).vocab) != len(changed.vocab)


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_a_file_replaced_in_place_is_read_again(tmp_path, split):
    """Same name, size and modification time, other words: the key follows the content, not the file's stat."""
    folder = write_wikitext(tmp_path / "wt", train=" = A = \n a b a c \n", valid=" a b \n", test=" c a \n")
    first = load_wikitext(folder, tmp_path / "cache")
    rewrite_in_place(folder / f"wiki.{split}.tokens", b" a", b" c")
    again = load_wikitext(folder, tmp_path / "cache")
    fresh = load_wikitext(folder, tmp_path / "fresh-cache")
    assert again.vocab.symbols == fresh.vocab.symbols
    assert all(torch.equal(again.splits[s], fresh.splits[s]) for s in fresh.splits)
    assert not torch.equal(again.splits[split], first.splits[split])


def test_damaged_cache_is_rebuilt(tmp_path):
    folder = write_wikitext(tmp_path / "wt")
    cache = tmp_path / "cache"
    first = load_wikitext(folder, cache)
    (cached,) = cache.iterdir()
    cached.write_bytes(cached.read_bytes()[:50])
    with pytest.warns(UserWarning, match="rebuilding"):
        again = load_wikitext(folder, cache)
    assert torch.equal(first.splits["valid"], again.splits["valid"])


# ------------------------------------------------------------------------------------------ built-in corpus
@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic")
    return folder, generate_corpus(SMALL, seed=5, folder=folder)


def test_builtin_corpus_is_deterministic_and_in_wikitext_format(small_corpus, tmp_path):
    folder, stats = small_corpus
    generate_corpus(SMALL, seed=5, folder=tmp_path)
    for name in ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"):
        assert (folder / name).read_bytes() == (tmp_path / name).read_bytes()
    generate_corpus(SMALL, seed=6, folder=tmp_path)
    assert (folder / "wiki.valid.tokens").read_bytes() != (tmp_path / "wiki.valid.tokens").read_bytes()
    lines = (folder / "wiki.train.tokens").read_text().splitlines()
    assert lines[0].startswith(" = ") and all(line.startswith(" ") for line in lines)
    # the token count the oracle used is the reader's count (words + <eos> per line)
    assert stats["train"]["tokens"] == sum(len(w) for w in read_words(folder / "wiki.train.tokens"))
    assert json.loads((folder / "corpus_stats.json").read_text())["splits"] == stats


def test_oracle_log_loss_matches_the_exact_entropy_rate(small_corpus):
    """If a probability were wrong or unnormalised, the oracle's mean log-loss on the text it wrote would
    drift away from the mean of its conditional entropies."""
    _, stats = small_corpus
    for split in ("train", "valid", "test"):
        s = stats[split]
        assert abs(s["oracle_nll"] - s["entropy_rate"]) < 0.06, s
        assert s["oracle_ppl"] < s["no_recall_ppl"]  # remembering the article's entities pays


def test_mentions_are_the_entities_introduced_far_back(small_corpus):
    """The long-range dependency: every capitalised name in an article is one of its intro's entities."""
    folder, _ = small_corpus
    article_entities: set[str] = set()
    distances = []
    position = 0
    for words in read_words(folder / "wiki.train.tokens"):
        if words[0] == "=":
            article_entities, intro_at = set(), position
        elif not article_entities and words[0][0].isupper():  # the intro line: "E1 , E2 , E3 and E4 ..."
            article_entities = {w for w in words[: 2 * SMALL.entities_per_article] if w[0].isupper()}
            assert len(article_entities) == SMALL.entities_per_article
        else:
            for offset, w in enumerate(words):
                if w[0].isupper():
                    assert w in article_entities
                    distances.append(position + offset - intro_at)
        position += len(words)
    assert max(distances) > 200  # some recalls reach far beyond a short context
