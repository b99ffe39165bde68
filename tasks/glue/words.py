"""The built-in GLUE tasks' words, taken from the built-in pretraining corpus's lexicon
(:class:`tasks.data.synthetic_lm.Lexicon`) so that fine-tuning sees the words pretraining saw.

The corpus's most frequent nouns are split into topic domains (people, things, places each), its verbs and
adjectives into the roles the generators need: synonym pairs (paraphrases), antonym pairs
(contradictions), positive and negative judging words (sentiment). The corpus gives these pseudo-words no
meaning, so the roles are learnt from the fine-tuning data, as a real model learns new words' senses. The
grammar's function words (``is``, ``does``, ``not``, ``by``, question words, ``but``) are English.
"""
from __future__ import annotations

from dataclasses import dataclass

from tasks.data.synthetic_lm import DETERMINERS, PREPOSITIONS, CorpusConfig, Lexicon

Verb = tuple[str, str, str]  # base (plural agreement), third person singular, past participle
DOMAIN_NAMES = ("alpha", "beta", "gamma", "delta", "epsilon")
SIZES = {"people": 5, "things": 8, "places": 5}
N_SYNONYMS, N_REVIEW_NOUNS, N_VERBS, N_ANTONYMS, N_COLOURS, N_JUDGING = 10, 10, 20, 10, 6, 12
INTENSIFIERS = ("very", "really", "quite", "so")


@dataclass(frozen=True)
class Words:
    domains: dict[str, dict[str, tuple[str, ...]]]
    verbs: tuple[Verb, ...]
    verb_synonyms: dict[str, Verb]  # base -> the synonym verb
    noun_synonyms: dict[str, str]  # both directions
    antonyms: dict[str, str]  # both directions
    adjectives: tuple[str, ...]  # antonym pairs + neutral "colours"
    positive: tuple[str, ...]
    negative: tuple[str, ...]
    review_nouns: tuple[str, ...]
    determiners: tuple[str, ...]
    prepositions: tuple[str, ...]

    @classmethod
    def from_corpus(cls, corpus: CorpusConfig | None = None, seed: int = 0) -> Words:
        """The words of the built-in corpus generated with ``corpus`` and ``seed`` (its most frequent ones)."""
        corpus = corpus or CorpusConfig()
        need = {
            "n_nouns": len(DOMAIN_NAMES) * sum(SIZES.values()) + N_SYNONYMS + N_REVIEW_NOUNS,
            "n_verbs": N_VERBS + N_SYNONYMS,
            "n_adjectives": 2 * N_ANTONYMS + N_COLOURS + 2 * N_JUDGING,
        }
        short = {k: v for k, v in need.items() if getattr(corpus, k) < v}
        if short:
            raise ValueError(f"the built-in GLUE tasks need a corpus lexicon with at least {short} "
                             f"(task.corpus has {({k: getattr(corpus, k) for k in short})})")
        lexicon = Lexicon(corpus, seed)
        nouns = iter(lexicon.nouns["sg"])
        domains = {d: {kind: tuple(next(nouns) for _ in range(n)) for kind, n in SIZES.items()} for d in DOMAIN_NAMES}
        in_domains = [n for d in domains.values() for kind in d.values() for n in kind]
        synonym_nouns = [next(nouns) for _ in range(N_SYNONYMS)]
        review_nouns = tuple(next(nouns) for _ in range(N_REVIEW_NOUNS))
        # the same index of each domain-ordered list gets a synonym: people, things and places all have some
        noun_pairs = list(zip(in_domains[:: len(in_domains) // N_SYNONYMS][:N_SYNONYMS], synonym_nouns))
        stems = lexicon.verbs["pl"]
        verbs = tuple((s, s + "s", s + "ed") for s in stems[: N_VERBS + N_SYNONYMS])
        adjectives = iter(lexicon.adjectives)
        antonym_pairs = [(next(adjectives), next(adjectives)) for _ in range(N_ANTONYMS)]
        colours = tuple(next(adjectives) for _ in range(N_COLOURS))
        return cls(
            domains=domains,
            verbs=verbs[:N_VERBS],
            verb_synonyms={v[0]: s for v, s in zip(verbs[:N_SYNONYMS], verbs[N_VERBS:])},
            noun_synonyms={a: b for pair in noun_pairs for a, b in (pair, pair[::-1])},
            antonyms={a: b for pair in antonym_pairs for a, b in (pair, pair[::-1])},
            adjectives=tuple(w for pair in antonym_pairs for w in pair) + colours,
            positive=tuple(next(adjectives) for _ in range(N_JUDGING)),
            negative=tuple(next(adjectives) for _ in range(N_JUDGING)),
            review_nouns=review_nouns,
            determiners=tuple(DETERMINERS["sg"]),
            prepositions=tuple(PREPOSITIONS),
        )
