"""Built-in GLUE tasks: official layouts, determinism, balance, labels that follow from the text."""
import collections
import random

import pytest

from tasks.data.synthetic_lm import CorpusConfig, Lexicon
from tasks.glue.formats import GLUE_FORMATS
from tasks.glue.generate import GENERATORS, MNLI_MATCHED, MNLI_MISMATCHED, _scramble, generate
from tasks.glue.reader import read_split
from tasks.glue.sentences import FORMS, Grammar, text
from tasks.glue.words import INTENSIFIERS, Words

SIZES = 60
FUNCTION_WORDS = {"is", "does", "not", "by", "who", "what", "where", "why", "how", "when", "it", "but", "and", ",",
                  ".", "?", *INTENSIFIERS}


@pytest.fixture(scope="module")
def words() -> Words:
    return Words.from_corpus()


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory, words):
    root = tmp_path_factory.mktemp("glue")
    for task, fmt in GLUE_FORMATS.items():
        generate(task, root, dict.fromkeys(fmt.splits, SIZES), seed=3, words=words)
    return root


@pytest.mark.parametrize("task", list(GLUE_FORMATS))
def test_official_layout_and_exact_balance(glue_dir, task):
    fmt = GLUE_FORMATS[task]
    shares = GENERATORS[task][1]
    for split in fmt.splits:
        data = read_split(glue_dir, task, split)  # the official reader accepts the file
        assert len(data) == SIZES and data.skipped == 0
        if fmt.is_regression:
            assert all(0 <= s <= 5 for s in data.labels) and 1.5 < sum(data.labels) / SIZES < 3.5
            continue
        counts = collections.Counter(data.labels)
        assert [counts[k] for k in range(1, len(shares))] == [round(s * SIZES) for s in shares[1:]]


@pytest.mark.parametrize("task", [t for t, f in GLUE_FORMATS.items() if not f.is_regression])
def test_label_is_a_function_of_the_text(glue_dir, task):
    seen = {}
    for split in GLUE_FORMATS[task].splits:
        data = read_split(glue_dir, task, split)
        pairs = zip(data.text_a, data.text_b or [None] * len(data))
        for pair, label in zip(pairs, data.labels):
            assert seen.setdefault(pair, label) == label, f"{pair} has two labels"


def test_words_come_from_the_pretraining_corpus(glue_dir):
    lexicon = Lexicon(CorpusConfig(), 0)
    corpus_words = {*lexicon.nouns["sg"], *lexicon.verbs["pl"], *lexicon.verbs["sg"], *lexicon.adjectives,
                    "a", "this", "every", "in", "of", "with", "near", "under", "beyond", "for", "across", "about",
                    "behind", "from", "at"}
    for task in GLUE_FORMATS:
        data = read_split(glue_dir, task, "train")
        used = {w for t in data.text_a + (data.text_b or []) for w in t.split()}
        participles = {w for w in used if w.endswith("ed") and w[:-2] in lexicon.verbs["pl"]}
        assert used - corpus_words - participles <= FUNCTION_WORDS, (task, used - corpus_words - FUNCTION_WORDS)


def test_deterministic_by_seed(tmp_path, words):
    sizes = {"train": 30, "dev": 30}
    a, b, c = (generate("mrpc", tmp_path / name, sizes, seed=s, words=words)
               for name, s in (("a", 1), ("b", 1), ("c", 2)))
    assert (a / "train.tsv").read_bytes() == (b / "train.tsv").read_bytes()
    assert (a / "train.tsv").read_bytes() != (c / "train.tsv").read_bytes()
    assert (a / "train.tsv").read_bytes() != (a / "dev.tsv").read_bytes()


def test_mnli_mismatched_comes_from_other_domains(glue_dir, words):
    grammar = Grammar(words)
    genres = {split: set(read_split(glue_dir, "mnli", split).path.read_text().split("\n")[1].split("\t")[3:4])
              for split in GLUE_FORMATS["mnli"].splits}
    assert genres["train"] <= set(MNLI_MATCHED) and genres["dev_mismatched"] <= set(MNLI_MISMATCHED)
    nouns = {split: {grammar.domain_of_noun.get(w) for t in read_split(glue_dir, "mnli", split).text_a
                     for w in t.split()} - {None} for split in ("train", "dev_mismatched")}
    assert nouns["train"] <= set(MNLI_MATCHED) and nouns["dev_mismatched"] <= set(MNLI_MISMATCHED)


def test_sst2_label_follows_polarity_negation_and_but(glue_dir, words):
    for split in ("train", "dev"):
        data = read_split(glue_dir, "sst2", split)
        for sentence, label in zip(data.text_a, data.labels):
            last = sentence.split(" but ")[-1].split()
            polarity = any(w in words.positive for w in last)
            assert (polarity != ("not" in last)) == bool(label), sentence


def test_cola_scrambles_are_never_a_grammatical_rendering(words):
    grammar, rng = Grammar(words), random.Random(0)
    for _ in range(300):
        clause = grammar.clause(rng, "alpha")
        renderings = {text(grammar.render(clause, form, synonyms)) for form in FORMS for synonyms in (False, True)}
        scrambled = _scramble(rng, grammar.render(clause, rng.choice(FORMS)))
        assert text(scrambled) not in renderings


def test_bad_sizes_are_rejected(tmp_path, words):
    with pytest.raises(ValueError, match=r"missing \['dev_mismatched'\]"):
        generate("mnli", tmp_path, {"train": 10, "dev_matched": 10}, words=words)
    with pytest.raises(ValueError, match="too few"):
        generate("mnli", tmp_path, {"train": 2, "dev_matched": 10, "dev_mismatched": 10}, words=words)


def test_small_corpus_lexicon_is_rejected():
    with pytest.raises(ValueError, match="n_nouns"):
        Words.from_corpus(CorpusConfig(n_nouns=20))


def test_the_grammar_inferences_behind_the_labels(words):
    from dataclasses import replace

    from tasks.glue.generate import relation

    g, rng = Grammar(words), random.Random(1)
    clause = g.clause(rng, "beta", place_p=1.0, adjective_p=1.0)
    reduced = replace(clause, place=None, subject=replace(clause.subject, adjective=None))
    assert g.entails(clause, reduced) and not g.entails(reduced, clause)
    assert relation(g, [clause], reduced) == "entailment"
    assert relation(g, [clause], replace(reduced, negated=True)) == "contradiction"
    assert relation(g, [clause], g.antonym(clause) or replace(clause, negated=True)) == "contradiction"
    assert relation(g, [reduced], clause) == "neutral"  # the place and an adjective are added
    assert relation(g, [clause], g.change(rng, clause, "verb")) == "neutral"
    for wh in ("who", "what", "where"):
        assert g.answers(clause, clause, wh)
        assert not g.answers(replace(clause, negated=True), clause, wh)
        assert not g.answers(g.change(rng, clause, "verb"), clause, wh)
    assert g.answers(g.change(rng, clause, "subject"), clause, "who")  # the asked slot may be anything
    assert not g.answers(g.change(rng, clause, "object"), clause, "who")
    assert not g.answers(replace(clause, place=None), clause, "where")
