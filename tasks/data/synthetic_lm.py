"""A generated corpus in WikiText's format with local structure, long-range recall and an exact entropy rate.

The text is a stream of articles, written like ``wiki.*.tokens``::

     = Velmora =                                   heading: the article's topic, one of the entity names
                                                   blank line
     Velmora , Daskin , Orluth and Peneva tavel some brisk morgens . a dosk ... .    intro paragraph
                                                   blank line
     These grent pralos of Daskin . Orluth vemmits every tarn in many lusk torvens . ...
     ...

Local structure: sentences follow a small grammar (determiner, optional adjective, noun, verb, object, optional
prepositional phrases); determiners and verbs agree in number with their noun; the noun after an adjective
follows that adjective's own preference order (a collocation). Long-range dependency: the intro paragraph
names ``entities_per_article`` entities drawn from a pool; every later mention of an entity (a noun phrase
with probability ``mention_prob``) is one of those, so predicting it well needs the article's beginning,
often hundreds of tokens back.

Exact entropy rate: every word class has its own words, so the grammar state after each token is a function
of the text so far (the process is unifilar) and the generator knows the true next-token distribution at
every position. It records, per split, the oracle's negative log-likelihood of the tokens it wrote (the best
achievable cross-entropy, in expectation), the expected value of that (the sum of the exact conditional
entropies) and the oracle without memory of the article's entities (every mention uniform over the pool).
"""
from __future__ import annotations

import bisect
import itertools
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from zoo_io.atomic import write_json, write_text

SPLIT_SEEDS = {"train": 1, "valid": 2, "test": 3}
DETERMINERS = {"sg": ["a", "this", "every"], "pl": ["these", "some", "many"]}
PREPOSITIONS = ["of", "in", "with", "near", "under", "beyond", "for", "across", "about", "behind", "from", "at"]


@dataclass
class CorpusConfig:
    """Sizes and probabilities of the built-in corpus (token counts are approximate: articles are whole)."""

    train_tokens: int = 2_000_000
    valid_tokens: int = 100_000
    test_tokens: int = 100_000
    n_nouns: int = 1000
    n_verbs: int = 200
    n_adjectives: int = 200
    n_entities: int = 500
    entities_per_article: int = 4
    mention_prob: float = 0.3
    adjective_prob: float = 0.35
    preposition_prob: float = 0.4
    sentence_continue_prob: float = 0.75
    new_article_prob: float = 0.15
    zipf_exponent: float = 1.1


class Zipf:
    """p(rank r) proportional to (r + 1)^-s over ``n`` items: sampling, log-probabilities, entropy."""

    def __init__(self, n: int, s: float):
        weights = [(r + 1) ** -s for r in range(n)]
        total = sum(weights)
        self.logp = [math.log(w / total) for w in weights]
        self.cumulative = list(itertools.accumulate(w / total for w in weights))
        self.entropy = -sum(math.exp(lp) * lp for lp in self.logp)

    def sample(self, rng: random.Random) -> int:
        return min(bisect.bisect_right(self.cumulative, rng.random()), len(self.cumulative) - 1)


def binary_entropy(p: float) -> float:
    return -sum(q * math.log(q) for q in (p, 1 - p) if q > 0)


def make_words(rng: random.Random, n: int, taken: set[str]) -> list[str]:
    """``n`` new pronounceable lower-case pseudo-words (none in ``taken``; adds them to it)."""
    onsets, vowels, codas = "bdfgklmnprstvz", "aeiou", ["", "n", "r", "l", "sk", "th", "m", "v"]
    words: list[str] = []
    while len(words) < n:
        syllables = rng.choice((2, 2, 3))
        word = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(syllables)) + rng.choice(codas)
        # plural / third-person forms add "s": keep both forms free
        if word not in taken and word + "s" not in taken and not word.endswith("s"):
            taken.update((word, word + "s"))
            words.append(word)
    return words


class Lexicon:
    """The words of every class, disjoint, drawn from the corpus seed; shared by all splits."""

    def __init__(self, cfg: CorpusConfig, seed: int):
        rng = random.Random(seed)
        taken = set(PREPOSITIONS) | {w for ws in DETERMINERS.values() for w in ws} | {"and"}
        noun_stems = make_words(rng, cfg.n_nouns, taken)
        verb_stems = make_words(rng, cfg.n_verbs, taken)
        self.nouns = {"sg": noun_stems, "pl": [w + "s" for w in noun_stems]}
        self.verbs = {"sg": [w + "s" for w in verb_stems], "pl": verb_stems}
        self.adjectives = make_words(rng, cfg.n_adjectives, taken)
        self.entities = [w.capitalize() for w in make_words(rng, cfg.n_entities, taken)]
        # each adjective prefers the nouns in its own order (a collocation)
        self.collocations = [rng.sample(range(cfg.n_nouns), cfg.n_nouns) for _ in self.adjectives]


class _Oracle:
    """Accumulates the true model's log-loss and entropy over the tokens written (all but the first)."""

    def __init__(self) -> None:
        self.tokens, self.nll, self.entropy, self.nll_no_recall = 0, 0.0, 0.0, 0.0

    def add(self, logp: float, entropy: float, logp_no_recall: float | None = None) -> None:
        if self.tokens > 0:  # the first token of a split is never predicted
            self.nll -= logp
            self.entropy += entropy
            self.nll_no_recall -= logp if logp_no_recall is None else logp_no_recall
        self.tokens += 1

    def summary(self) -> dict[str, float]:
        predicted = max(self.tokens - 1, 1)
        return {
            "tokens": self.tokens,
            "oracle_nll": self.nll / predicted,
            "oracle_ppl": math.exp(self.nll / predicted),
            "entropy_rate": self.entropy / predicted,
            "entropy_rate_ppl": math.exp(self.entropy / predicted),
            "no_recall_ppl": math.exp(self.nll_no_recall / predicted),
        }


class ArticleWriter:
    """Writes one split: articles until ``target_tokens`` is reached, tracking the oracle."""

    def __init__(self, cfg: CorpusConfig, lexicon: Lexicon, seed: int):
        self.cfg, self.lex, self.rng = cfg, lexicon, random.Random(seed)
        self.oracle = _Oracle()
        self.lines: list[str] = []
        self.line: list[str] = []
        self.noun = Zipf(cfg.n_nouns, cfg.zipf_exponent)
        self.verb = Zipf(cfg.n_verbs, cfg.zipf_exponent)
        self.adjective = Zipf(cfg.n_adjectives, cfg.zipf_exponent)
        self.preposition = Zipf(len(PREPOSITIONS), cfg.zipf_exponent)
        self.entities: list[str] = []
        k, m = cfg.entities_per_article, cfg.mention_prob
        det_share = (1 - m) / 2
        # entropy of the token that starts a noun phrase (entity, singular or plural determiner)
        self.h_np_start = -(m * math.log(m) + 2 * det_share * math.log(det_share)) + m * math.log(k)
        self.h_np_start += (1 - m) * math.log(len(DETERMINERS["sg"]))
        a = cfg.adjective_prob
        self.h_after_det = binary_entropy(a) + a * self.adjective.entropy + (1 - a) * self.noun.entropy
        q = cfg.preposition_prob
        self.h_after_np = binary_entropy(q) + q * self.preposition.entropy
        c = cfg.sentence_continue_prob
        self.h_after_sentence = binary_entropy(c) + c * self.h_np_start
        n = cfg.new_article_prob
        self.h_line_start = binary_entropy(n) + (1 - n) * self.h_np_start

    # ---------------------------------------------------------------------------------------- output
    def emit(self, word: str, logp: float, entropy: float, logp_no_recall: float | None = None) -> None:
        self.line.append(word)
        self.oracle.add(logp, entropy, logp_no_recall)

    def end_line(self, logp: float = 0.0, entropy: float = 0.0) -> None:
        """The line's ``<eos>`` (a token of the stream, predicted like any other)."""
        self.lines.append(" " + " ".join(self.line) + " \n" if self.line else " \n")
        self.line = []
        self.oracle.add(logp, entropy)

    # ---------------------------------------------------------------------------------------- grammar
    def write(self, target_tokens: int) -> tuple[list[str], dict[str, float]]:
        first = True
        while self.oracle.tokens < target_tokens:
            self.article(first)
            first = False
        return self.lines, self.oracle.summary()

    def article(self, first: bool) -> None:
        cfg, rng = self.cfg, self.rng
        n_pool, k = cfg.n_entities, cfg.entities_per_article
        # " = Topic = ": the heading is chosen at a line start (except the split's first token)
        start_p = 1.0 if first else cfg.new_article_prob
        self.emit("=", math.log(start_p), 0.0 if first else self.h_line_start)
        self.entities = rng.sample(self.lex.entities, k)
        self.emit(self.entities[0], -math.log(n_pool), math.log(n_pool))
        self.emit("=", 0.0, 0.0)
        self.end_line()
        self.end_line()  # blank line
        # intro: "Topic , E2 , ... and Ek" then a plural verb phrase
        self.emit(self.entities[0], 0.0, 0.0)
        for j in range(1, k):
            self.emit("and" if j == k - 1 else ",", 0.0, 0.0)
            self.emit(self.entities[j], -math.log(n_pool - j), math.log(n_pool - j))
        self.verb_phrase("pl")
        self.paragraph_rest()
        while True:  # at a line start after a blank line: another paragraph or the next article
            if rng.random() < cfg.new_article_prob:
                return
            self.sentence(math.log(1 - cfg.new_article_prob), self.h_line_start)
            self.paragraph_rest()

    def paragraph_rest(self) -> None:
        """After a sentence's ".": more sentences, then the paragraph's end of line and a blank line."""
        c = self.cfg.sentence_continue_prob
        while self.rng.random() < c:
            self.sentence(math.log(c), self.h_after_sentence)
        self.end_line(math.log(1 - c), self.h_after_sentence)
        self.end_line()

    def sentence(self, logp_start: float, h_start: float) -> None:
        number = self.noun_phrase(logp_start, h_start)
        self.verb_phrase(number)

    def verb_phrase(self, number: str) -> None:
        r = self.verb.sample(self.rng)
        self.emit(self.lex.verbs[number][r], self.verb.logp[r], self.verb.entropy)
        self.noun_phrase(0.0, self.h_np_start)
        q = self.cfg.preposition_prob
        while self.rng.random() < q:
            r = self.preposition.sample(self.rng)
            self.emit(PREPOSITIONS[r], math.log(q) + self.preposition.logp[r], self.h_after_np)
            self.noun_phrase(0.0, self.h_np_start)
        self.emit(".", math.log(1 - q), self.h_after_np)

    def noun_phrase(self, logp_start: float, h_start: float) -> str:
        """Writes a noun phrase; ``logp_start``/``h_start``: log-probability and entropy of reaching a noun
        phrase at this point (the choice among what may come next). Returns its grammatical number."""
        cfg, rng, lex = self.cfg, self.rng, self.lex
        m = cfg.mention_prob
        u = rng.random()
        if u < m:
            entity = rng.choice(self.entities)
            logp = logp_start + math.log(m) - math.log(cfg.entities_per_article)
            no_recall = logp_start + math.log(m) - math.log(cfg.n_entities)
            self.emit(entity, logp, h_start, no_recall)
            return "sg"
        number = "sg" if u < m + (1 - m) / 2 else "pl"
        dets = DETERMINERS[number]
        self.emit(rng.choice(dets), logp_start + math.log((1 - m) / 2 / len(dets)), h_start)
        a = cfg.adjective_prob
        if rng.random() < a:
            r = self.adjective.sample(rng)
            self.emit(lex.adjectives[r], math.log(a) + self.adjective.logp[r], self.h_after_det)
            rank = self.noun.sample(rng)
            self.emit(lex.nouns[number][lex.collocations[r][rank]], self.noun.logp[rank], self.noun.entropy)
        else:
            rank = self.noun.sample(rng)
            self.emit(lex.nouns[number][rank], math.log(1 - a) + self.noun.logp[rank], self.h_after_det)
        return number


def generate_corpus(cfg: CorpusConfig, seed: int, folder: str | Path) -> dict[str, dict[str, float]]:
    """Write ``wiki.{train,valid,test}.tokens`` and ``corpus_stats.json`` into ``folder``; return the stats."""
    from tasks.data.wikitext import SPLIT_FILES

    lexicon = Lexicon(cfg, seed)
    sizes = {"train": cfg.train_tokens, "valid": cfg.valid_tokens, "test": cfg.test_tokens}
    stats: dict[str, dict[str, float]] = {}
    for split, name in SPLIT_FILES.items():
        lines, stats[split] = ArticleWriter(cfg, lexicon, seed * 1000 + SPLIT_SEEDS[split]).write(sizes[split])
        write_text(Path(folder) / name, "".join(lines))
    write_json(Path(folder) / "corpus_stats.json", {"config": asdict(cfg), "seed": seed, "splits": stats})
    return stats
