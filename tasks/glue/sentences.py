"""A tiny clause model behind the built-in GLUE tasks.

What a sentence *means* is a :class:`Clause` (who does what to which thing, where); how it is *said* is a
rendering: active, passive or with the place fronted, with or without synonyms. A paraphrase is the same
clause said otherwise; different content is a clause with one slot changed or its roles swapped. The
grammar follows the built-in corpus's (``determiner [adjective] noun verb-s determiner [adjective] noun
[preposition noun phrase] .``), with negation, the passive and questions added.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace

from tasks.glue.words import Verb, Words

Tagged = list[tuple[str, str]]  # (word, part of speech)
FORMS = ("active", "passive", "fronted")
QUESTION_GAPS = ("who", "what", "where")  # questions that leave out one slot (answerable from a clause)
QUESTION_FRAMES = ("why", "how", "when")  # questions that state the whole clause and ask what it does not say


@dataclass(frozen=True)
class NounPhrase:
    det: str
    adjective: str | None
    noun: str


@dataclass(frozen=True)
class Clause:
    """``subject verb object [preposition place]``, present tense, possibly negated."""

    subject: NounPhrase
    verb: Verb
    obj: NounPhrase
    place: tuple[str, NounPhrase] | None = None
    negated: bool = False


class Grammar:
    """Sampling, changing, rendering and comparing clauses over one set of :class:`Words`."""

    def __init__(self, words: Words):
        self.w = words
        self.verb_key = {v[0]: v[0] for v in words.verbs} | {s[0]: v for v, s in words.verb_synonyms.items()}
        self.domain_of_noun = {n: d for d, kinds in words.domains.items() for ns in kinds.values() for n in ns}

    # ------------------------------------------------------------------------------------ sampling
    def noun_phrase(self, rng: random.Random, nouns: tuple[str, ...], adjective_p: float = 0.5) -> NounPhrase:
        adjective = rng.choice(self.w.adjectives) if rng.random() < adjective_p else None
        return NounPhrase(rng.choice(self.w.determiners), adjective, rng.choice(nouns))

    def clause(self, rng: random.Random, domain: str, place_p: float = 0.6, adjective_p: float = 0.5) -> Clause:
        words = self.w.domains[domain]
        subject = self.noun_phrase(rng, words["people"], adjective_p)
        people = tuple(p for p in words["people"] if p != subject.noun)
        obj = self.noun_phrase(rng, words["things"] if rng.random() < 0.7 else people, adjective_p)
        place = None
        if rng.random() < place_p:
            place = (rng.choice(self.w.prepositions), self.noun_phrase(rng, words["places"], adjective_p / 2))
        return Clause(subject, rng.choice(self.w.verbs), obj, place)

    def domain(self, clause: Clause) -> str:
        return self.domain_of_noun[self.noun_key(clause.subject.noun)]

    # --------------------------------------------------------------------------- different content
    def slots(self, clause: Clause) -> list[str]:
        return ["subject", "object", "verb"] + (["place"] if clause.place else [])

    def change(self, rng: random.Random, clause: Clause, slot: str) -> Clause:
        """The clause with one slot given another word of its class (never the same or a synonym)."""
        words = self.w.domains[self.domain(clause)]
        if slot == "subject":
            return replace(clause, subject=self._other_noun(rng, clause.subject, words["people"]))
        if slot == "object":
            pool = words["people"] if self.noun_key(clause.obj.noun) in words["people"] else words["things"]
            return replace(clause, obj=self._other_noun(rng, clause.obj, pool))
        if slot == "verb":
            key = self.verb_key[clause.verb[0]]
            return replace(clause, verb=rng.choice([v for v in self.w.verbs if v[0] != key]))
        if slot == "place" and clause.place:
            return replace(clause, place=(clause.place[0], self._other_noun(rng, clause.place[1], words["places"])))
        if slot == "subject_adjective":
            return replace(clause, subject=self._other_adjective(rng, clause.subject))
        if slot == "object_adjective":
            return replace(clause, obj=self._other_adjective(rng, clause.obj))
        raise ValueError(f"cannot change slot {slot!r} of {clause}")

    def swap_roles(self, clause: Clause) -> Clause | None:
        """Subject and object exchanged, same words, other meaning (``None`` unless the object is a person)."""
        if self.noun_key(clause.obj.noun) not in self.w.domains[self.domain(clause)]["people"]:
            return None
        return replace(clause, subject=clause.obj, obj=clause.subject)

    def different(self, rng: random.Random, clause: Clause, slots: list[str] | None = None) -> Clause:
        """Other content, close in wording: one slot changed or (sometimes) the roles swapped."""
        swapped = self.swap_roles(clause)
        if swapped is not None and rng.random() < 0.3:
            return swapped
        return self.change(rng, clause, rng.choice(slots or self.slots(clause)))

    def antonym(self, clause: Clause) -> Clause | None:
        """One adjective replaced by its antonym (``None`` if no adjective has one)."""
        for role in ("subject", "obj"):
            np = getattr(clause, role)
            if np.adjective in self.w.antonyms:
                return replace(clause, **{role: replace(np, adjective=self.w.antonyms[np.adjective])})
        return None

    def reduce(self, rng: random.Random, clause: Clause, keep_p: float = 0.5) -> Clause:
        """Some optional details (adjectives, the place) left out: what remains is still entailed."""

        def np(p: NounPhrase) -> NounPhrase:
            return p if rng.random() < keep_p else replace(p, adjective=None)

        place = clause.place if rng.random() < keep_p else None
        return replace(clause, subject=np(clause.subject), obj=np(clause.obj), place=place)

    def _other_noun(self, rng: random.Random, np: NounPhrase, pool: tuple[str, ...]) -> NounPhrase:
        key = self.noun_key(np.noun)
        return replace(np, noun=rng.choice([n for n in pool if n != key]))

    def _other_adjective(self, rng: random.Random, np: NounPhrase) -> NounPhrase:
        return replace(np, adjective=rng.choice([a for a in self.w.adjectives if a != np.adjective]))

    # ----------------------------------------------------------------------------------- comparing
    def noun_key(self, noun: str) -> str:
        """The domain noun a noun stands for (a synonym stands for its partner)."""
        return noun if noun in self.domain_of_noun else self.w.noun_synonyms.get(noun, noun)

    def _np_entails(self, p: NounPhrase, h: NounPhrase) -> bool:
        return self.noun_key(p.noun) == self.noun_key(h.noun) and h.adjective in (None, p.adjective)

    def entails(self, premise: Clause, hypothesis: Clause) -> bool:
        """Everything the hypothesis states, the premise states (details may be left out, none added)."""
        place_ok = hypothesis.place is None or (
            premise.place is not None and premise.place[0] == hypothesis.place[0]
            and self._np_entails(premise.place[1], hypothesis.place[1])
        )
        return (
            self._np_entails(premise.subject, hypothesis.subject) and self._np_entails(premise.obj, hypothesis.obj)
            and place_ok and self.verb_key[premise.verb[0]] == self.verb_key[hypothesis.verb[0]]
            and premise.negated == hypothesis.negated
        )

    def answers(self, clause: Clause, asked: Clause, wh: str) -> bool:
        """Does ``clause`` answer the ``wh`` question about ``asked``: it states the asked slot and agrees
        with every slot the question gives."""
        if wh not in QUESTION_GAPS:
            raise ValueError(f"questions with {wh!r} are not answerable from a clause; valid: {QUESTION_GAPS}")
        gap = {"who": "subject", "what": "obj", "where": "place"}[wh]
        if gap == "place" and clause.place is None:
            return False
        return self.entails(clause, replace(asked, **{gap: getattr(clause, gap)}))

    # ----------------------------------------------------------------------------------- rendering
    def np_words(self, np: NounPhrase, synonyms: bool = False) -> list[str]:
        noun = self.w.noun_synonyms.get(np.noun, np.noun) if synonyms else np.noun
        return [np.det, *([np.adjective] if np.adjective else []), noun]

    def _verb(self, clause: Clause, synonyms: bool) -> Verb:
        return self.w.verb_synonyms.get(clause.verb[0], clause.verb) if synonyms else clause.verb

    def render(self, clause: Clause, form: str = "active", synonyms: bool = False) -> Tagged:
        """The clause as tagged words ending with "."; ``synonyms``: its verb and nouns' synonyms where they exist."""
        verb = self._verb(clause, synonyms)
        subject = _tag_np(self.np_words(clause.subject, synonyms))
        obj = _tag_np(self.np_words(clause.obj, synonyms))
        place = [(clause.place[0], "P"), *_tag_np(self.np_words(clause.place[1], synonyms))] if clause.place else []
        not_ = [("not", "NEG")] if clause.negated else []
        if form == "passive":
            words = [*obj, ("is", "AUX"), *not_, (verb[2], "V"), *place, ("by", "P"), *subject]
        else:
            predicate = [("does", "AUX"), *not_, (verb[0], "V")] if clause.negated else [(verb[1], "V")]
            words = [*subject, *predicate, *obj]
            words = [*place, (",", "PUNCT"), *words] if form == "fronted" and place else [*words, *place]
        return [*words, (".", "PUNCT")]

    def say(self, clause: Clause, rng: random.Random) -> str:
        """A random rendering (form, synonyms or not) as text."""
        form = rng.choice(FORMS if clause.place else FORMS[:2])
        return text(self.render(clause, form, synonyms=rng.random() < 0.5))

    def question(self, clause: Clause, wh: str, passive: bool = False, synonyms: bool = False) -> str:
        """A question about the clause: ``who``/``what``/``where`` leave that slot out, the others give all."""
        verb = self._verb(clause, synonyms)
        subject, obj = self.np_words(clause.subject, synonyms), self.np_words(clause.obj, synonyms)
        place = [clause.place[0], *self.np_words(clause.place[1], synonyms)] if clause.place and wh != "where" else []
        if wh == "who":  # asks the subject
            words = ["who", "is", *obj, verb[2], *place, "by"] if passive else ["who", verb[1], *obj, *place]
        elif wh == "what":  # asks the object
            words = ["what", "is", verb[2], "by", *subject, *place] if passive else ["what", "does", *subject,
                                                                                    verb[0], *place]
        elif wh == "where":
            words = ["where", "is", *obj, verb[2], "by", *subject] if passive else ["where", "does", *subject,
                                                                                   verb[0], *obj]
        elif wh in QUESTION_FRAMES:
            words = ([wh, "is", *obj, verb[2], *place, "by", *subject] if passive
                     else [wh, "does", *subject, verb[0], *obj, *place])
        else:
            raise ValueError(f"unknown question word {wh!r}; valid: {[*QUESTION_GAPS, *QUESTION_FRAMES]}")
        return " ".join([*words, "?"])


def text(words: Tagged) -> str:
    return " ".join(w for w, _ in words)


def _tag_np(words: list[str]) -> Tagged:
    return list(zip(words, ["DET"] + ["ADJ"] * (len(words) - 2) + ["N"]))
