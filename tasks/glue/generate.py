"""Built-in GLUE tasks: generated files in exactly the official layouts, whose labels depend on the text the
way the real task's do, with class balance like the real sets, deterministic by seed.

| task | the label depends on | share (as in the real train set) |
|---|---|---|
| CoLA | word order: a grammatical clause vs one with words moved out of place | 70% acceptable |
| SST-2 | polarity of the judging word, flipped by negation; after "but" the second clause decides | 56% positive |
| MRPC | paraphrase (same clause said otherwise) vs one slot changed or the roles swapped | 68% paraphrase |
| QQP | the same question said otherwise vs another question word, slot or roles | 37% duplicate |
| QNLI | whether the sentence answers the question (states the asked slot, agrees on the rest) | 50% entailment |
| RTE | hypothesis stated by the premise (details dropped) vs changed, negated or added to | 50% entailment |
| MNLI | entailment / contradiction (negation, antonym) / neutral (a detail or fact added) | 1/3 each |
| STS-B | 5 minus the number of the five content words changed, plus a little noise | spread over 0-5 |

Words come from the built-in pretraining corpus (:mod:`tasks.glue.words`); MNLI's train and dev_matched
sets use the domains ``MNLI_MATCHED`` and dev_mismatched the others, as the real dev_mismatched comes from
genres absent from training.
"""
from __future__ import annotations

import csv
import random
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from tasks.glue.formats import GlueFormat, get_format
from tasks.glue.sentences import FORMS, QUESTION_FRAMES, QUESTION_GAPS, Clause, Grammar, text
from tasks.glue.words import DOMAIN_NAMES, INTENSIFIERS, Words
from zoo_io.atomic import atomic_write

MNLI_MATCHED = DOMAIN_NAMES[:3]
MNLI_MISMATCHED = DOMAIN_NAMES[3:]

Row = list[str]
Generator = Callable[[Grammar, random.Random, list[int], str], list[Row]]  # (grammar, rng, labels, split) -> rows


def balanced_labels(rng: random.Random, n: int, shares: tuple[float, ...]) -> list[int]:
    """``n`` labels, class ``k > 0`` exactly ``round(shares[k] * n)`` times (class 0 the rest), shuffled."""
    counts = [round(share * n) for share in shares[1:]]
    labels = [0] * (n - sum(counts)) + [k + 1 for k, c in enumerate(counts) for _ in range(c)]
    rng.shuffle(labels)
    return labels


def _any_domain(rng: random.Random) -> str:
    return rng.choice(DOMAIN_NAMES)


# ------------------------------------------------------------------------------------------- CoLA
def _cola(g: Grammar, rng: random.Random, labels: list[int], split: str) -> list[Row]:
    rows = []
    for label in labels:
        clause = replace(g.clause(rng, _any_domain(rng)), negated=rng.random() < 0.2)
        words = g.render(clause, rng.choice(FORMS if clause.place else FORMS[:2]))
        if not label:
            words = _scramble(rng, words)
        rows.append(["bi01", str(label), "" if label else "*", text(words)])
    return rows


def _scramble(rng: random.Random, words: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Words out of the grammar's order: two neighbours of different kinds swapped, the verb moved to the end,
    or a noun put before its determiner."""
    words = list(words)
    kind = rng.choice(("swap", "swap", "verb_last", "noun_first"))
    if kind == "verb_last":
        verb = next(i for i, (_, tag) in enumerate(words) if tag == "V")
        return [*words[:verb], *words[verb + 1 : -1], words[verb], words[-1]]
    if kind == "noun_first":
        start = rng.choice([i for i, (_, tag) in enumerate(words) if tag == "DET"])
        end = next(i for i in range(start, len(words)) if words[i][1] == "N")
        return [*words[:start], words[end], *words[start:end], *words[end + 1 :]]
    pairs = [i for i in range(len(words) - 2)
             if words[i][1] != words[i + 1][1] and "PUNCT" not in (words[i][1], words[i + 1][1])]
    i = rng.choice(pairs)
    words[i], words[i + 1] = words[i + 1], words[i]
    return words


# ------------------------------------------------------------------------------------------ SST-2
def _sst2(g: Grammar, rng: random.Random, labels: list[int], split: str) -> list[Row]:
    return [[_review(g, rng, bool(label)), str(label)] for label in labels]


def _review(g: Grammar, rng: random.Random, positive: bool) -> str:
    """A judgement of polarity ``positive``: negation flips the judging word's; after "but" the end decides."""

    def judgement(polarity: bool) -> list[str]:
        negated = rng.random() < 0.35
        word = rng.choice(g.w.positive if polarity != negated else g.w.negative)
        degree = [rng.choice(INTENSIFIERS)] if rng.random() < 0.4 else []
        noun = rng.choice(g.w.review_nouns)
        not_ = ["not"] if negated else []
        if rng.random() < 0.5:
            return [rng.choice(g.w.determiners), noun, "is", *not_, *degree, word]
        return ["it", "is", *not_, "a", *degree, word, noun]

    if rng.random() < 0.3:
        return " ".join([*judgement(not positive), ",", "but", *judgement(positive), "."])
    return " ".join([*judgement(positive), "."])


# ------------------------------------------------------------------------------------- MRPC / QQP
def _mrpc(g: Grammar, rng: random.Random, labels: list[int], split: str) -> list[Row]:
    rows = []
    for label in labels:
        clause = g.clause(rng, _any_domain(rng), place_p=0.7)
        other = clause if label else g.different(rng, clause)
        first, second = g.say(clause, rng), g.say(other, rng)
        while second == first:
            second = g.say(other, rng)
        rows.append([str(label), str(rng.randrange(10**5, 10**7)), str(rng.randrange(10**5, 10**7)), first, second])
    return rows


def _shown_slots(g: Grammar, clause: Clause, wh: str) -> list[str]:
    """The slots a ``wh`` question about ``clause`` states (all but the one it asks for)."""
    asked = {"who": "subject", "what": "object", "where": "place"}.get(wh)
    return [s for s in g.slots(clause) if s != asked]


def _qqp(g: Grammar, rng: random.Random, labels: list[int], split: str) -> list[Row]:
    rows = []
    for i, label in enumerate(labels):
        clause = g.clause(rng, _any_domain(rng), place_p=0.5)
        wh = rng.choice(QUESTION_GAPS + QUESTION_FRAMES)
        first = g.question(clause, wh, passive=rng.random() < 0.5, synonyms=rng.random() < 0.5)
        other, other_wh = clause, wh
        if not label:
            if wh in QUESTION_FRAMES and rng.random() < 0.3:
                other_wh = rng.choice([w for w in QUESTION_FRAMES if w != wh])
            else:
                other = g.different(rng, clause, _shown_slots(g, clause, wh))
        second = first
        while second == first:
            second = g.question(other, other_wh, passive=rng.random() < 0.5, synonyms=rng.random() < 0.5)
        rows.append([str(i), str(2 * i + 1), str(2 * i + 2), first, second, str(label)])
    return rows


# ------------------------------------------------------------------------------------------- QNLI
def _join(g: Grammar, rng: random.Random, clauses: list[Clause]) -> str:
    return " , and ".join(g.say(c, rng)[:-2] for c in clauses) + " ."


def _qnli(g: Grammar, rng: random.Random, labels: list[int], split: str) -> list[Row]:
    names = get_format("qnli").labels
    rows = []
    for i, label in enumerate(labels):  # 0 entailment, 1 not_entailment
        domain = _any_domain(rng)
        asked = g.clause(rng, domain, place_p=0.6)
        wh = rng.choice(QUESTION_GAPS if asked.place else QUESTION_GAPS[:2])
        question = g.question(asked, wh, passive=rng.random() < 0.3, synonyms=rng.random() < 0.3)
        while True:
            clauses = [asked if label == 0 else _unanswering(g, rng, asked, wh)]
            if rng.random() < 0.4:  # a second clause about other things, as QNLI's context sentences have
                clauses.insert(rng.randrange(2), g.clause(rng, domain))
            if any(g.answers(c, asked, wh) for c in clauses) == (label == 0):
                break
        rows.append([str(i), question, _join(g, rng, clauses), names[label]])
    return rows


def _unanswering(g: Grammar, rng: random.Random, asked: Clause, wh: str) -> Clause:
    """About the same things, but no answer: a given slot differs, the asked place is missing, or negated."""
    kind = rng.random()
    if wh == "where" and kind < 0.25:
        return replace(asked, place=None)
    if kind < 0.4:
        return replace(asked, negated=True)
    return g.different(rng, asked, _shown_slots(g, asked, wh))


# ------------------------------------------------------------------------------------ RTE / MNLI
def _premise(g: Grammar, rng: random.Random, domains: tuple[str, ...]) -> list[Clause]:
    domain = rng.choice(domains)
    return [g.clause(rng, domain, place_p=0.5, adjective_p=0.6) for _ in range(1 if rng.random() < 0.6 else 2)]


def _neutral(g: Grammar, rng: random.Random, premise: Clause, reduced: Clause) -> Clause:
    """The reduced clause with something the premise does not say: a place, an adjective, another verb."""
    words = g.w.domains[g.domain(premise)]
    options = [g.change(rng, reduced, "verb")]
    if premise.place is None:
        options.append(replace(reduced, place=(rng.choice(g.w.prepositions), g.noun_phrase(rng, words["places"]))))
    for role in ("subject", "obj"):
        np = getattr(premise, role)
        if np.adjective is None:
            options.append(replace(reduced, **{role: replace(np, adjective=rng.choice(g.w.adjectives))}))
    return rng.choice(options)


def _hypothesis(g: Grammar, rng: random.Random, premise: list[Clause], kind: str) -> Clause:
    """A hypothesis of ``kind`` (entailment, contradiction, neutral or changed) about one premise clause."""
    clause = rng.choice(premise)
    reduced = g.reduce(rng, clause)
    if kind == "entailment":
        return reduced
    if kind == "contradiction":
        antonym = g.antonym(reduced) if rng.random() < 0.4 else None
        return antonym or replace(reduced, negated=True)
    if kind == "neutral":
        return _neutral(g, rng, clause, reduced)
    return g.different(rng, reduced)


def relation(g: Grammar, premise: list[Clause], hypothesis: Clause) -> str:
    """What the premise says of the hypothesis: ``entailment``, ``contradiction`` or ``neutral``."""
    if any(g.entails(p, hypothesis) for p in premise):
        return "entailment"
    opposites = [replace(hypothesis, negated=not hypothesis.negated), g.antonym(hypothesis)]
    if any(o is not None and g.entails(p, o) for p in premise for o in opposites):
        return "contradiction"
    return "neutral"


def _rte(g: Grammar, rng: random.Random, labels: list[int], split: str) -> list[Row]:
    names = get_format("rte").labels
    rows = []
    for i, label in enumerate(labels):  # 0 entailment, 1 not_entailment
        while True:
            premise = _premise(g, rng, DOMAIN_NAMES)
            kind = "entailment" if label == 0 else rng.choice(("contradiction", "neutral", "changed"))
            hypothesis = _hypothesis(g, rng, premise, kind)
            if (relation(g, premise, hypothesis) == "entailment") == (label == 0):
                break
        rows.append([str(i), _join(g, rng, premise), g.say(hypothesis, rng), names[label]])
    return rows


def _mnli(g: Grammar, rng: random.Random, labels: list[int], split: str) -> list[Row]:
    domains = MNLI_MISMATCHED if split == "dev_mismatched" else MNLI_MATCHED
    names = get_format("mnli").labels
    rows = []
    for i, label in enumerate(labels):
        while True:
            premise = _premise(g, rng, domains)
            hypothesis = _hypothesis(g, rng, premise, names[label])
            if relation(g, premise, hypothesis) == names[label]:
                break
        first, second = _join(g, rng, premise), g.say(hypothesis, rng)
        annotations = [names[label]] * (1 if split == "train" else 5)
        rows.append([str(i), str(i), f"{i}{'cen'[label]}", g.domain(premise[0]), _binary_parse(first),
                     _binary_parse(second), _parse(first), _parse(second), first, second, *annotations, names[label]])
    return rows


def _binary_parse(sentence: str) -> str:
    words = sentence.split()
    tree = words[-1]
    for word in reversed(words[:-1]):
        tree = f"( {word} {tree} )"
    return tree


def _parse(sentence: str) -> str:
    return "(ROOT (S " + " ".join(f"(X {w})" for w in sentence.split()) + "))"


# ------------------------------------------------------------------------------------------ STS-B
STSB_SLOTS = ("subject", "subject_adjective", "verb", "object", "place")


def _stsb(g: Grammar, rng: random.Random, labels: list[int], split: str) -> list[Row]:
    rows = []
    for i, changed in enumerate(labels):  # the label drawn here: how many of the five content words change
        clause = g.clause(rng, _any_domain(rng), place_p=1.0, adjective_p=0.0)
        clause = replace(clause, subject=replace(clause.subject, adjective=rng.choice(g.w.adjectives)))
        other = clause
        for slot in rng.sample(STSB_SLOTS, changed):
            other = g.change(rng, other, slot)
        score = min(5.0, max(0.0, 5.0 - changed + rng.uniform(-0.4, 0.4)))
        rows.append([str(i), "main-captions", "MSRvid", "2012test", f"{i:04d}", "none", "none",
                     g.say(clause, rng), g.say(other, rng), f"{score:.3f}"])
    return rows


# --------------------------------------------------------------------------------------- writing
# task -> (generator, shares of the classes in label order; STS-B: of 0..5 changed content words)
GENERATORS: dict[str, tuple[Generator, tuple[float, ...]]] = {
    "cola": (_cola, (0.30, 0.70)),
    "sst2": (_sst2, (0.44, 0.56)),
    "mrpc": (_mrpc, (0.32, 0.68)),
    "qqp": (_qqp, (0.63, 0.37)),
    "qnli": (_qnli, (0.50, 0.50)),
    "rte": (_rte, (0.50, 0.50)),
    "mnli": (_mnli, (1 / 3, 1 / 3, 1 / 3)),
    "stsb": (_stsb, (1 / 6,) * 6),
}


def generate(task: str, directory: str | Path, sizes: Mapping[str, int], seed: int = 0,
             words: Words | None = None) -> Path:
    """Write ``task``'s splits (``sizes``: split -> examples) into ``directory/<TaskDir>/``; return that folder.

    ``words``: the vocabulary (default: the built-in corpus's with its default settings). The same inputs
    always write the same bytes; each split draws from its own random stream.
    """
    fmt = get_format(task)
    unknown, missing = sorted(set(sizes) - set(fmt.splits)), [s for s in fmt.splits if s not in sizes]
    if unknown or missing:
        raise ValueError(f"GLUE {task}: sizes must give each split of {fmt.splits}; "
                         f"unknown {unknown}, missing {missing}")
    generator, shares = GENERATORS[task]
    grammar = Grammar(words or Words.from_corpus())
    out = Path(directory) / fmt.directory
    out.mkdir(parents=True, exist_ok=True)
    for split, n in sizes.items():
        if n < len(shares):
            raise ValueError(f"GLUE {task} {split}: {n} examples are too few (at least {len(shares)})")
        rng = random.Random(f"glue/{task}/{split}/{seed}")
        rows = generator(grammar, rng, balanced_labels(rng, n, shares), split)
        _write_tsv(out / fmt.file_name(split), fmt, split, rows)
    return out


def _write_tsv(path: Path, fmt: GlueFormat, split: str, rows: list[Row]) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, lineterminator="\n")
            if fmt.headers[split] is not None:
                writer.writerow(fmt.headers[split])
            for row in rows:
                if len(row) != fmt.columns(split) or any("\t" in c or "\n" in c for c in row):
                    raise AssertionError(f"a generated GLUE {fmt.name} row does not fit the format: {row}")
                writer.writerow(row)

    atomic_write(path, write)
