"""ListOps generator: LRA's tree grammar, seeded, written as ``listops-1000/basic_{train,val,test}.tsv``.

The procedure is LRA's ``listops.py``. A node below ``max_depth`` draws r ~ U[0, 1); when r > ``value_p``
(0.25) it is a leaf, a digit 0-9 drawn uniformly, otherwise an operator node: an operator drawn from
MIN, MAX, MED (median, truncated to an integer) and SM (sum modulo 10) with 2..``max_args`` (10)
arguments, each a subtree. Nodes at ``max_depth`` (10) are always leaves. So, as in LRA's code, the name
``VALUE_P`` notwithstanding, 0.25 is the probability of an *operator* and leaves come with probability
0.75; with the literal reading (leaves 0.25) almost every tree would reach depth 10 and explode in size.
The length of a tree is its number of tokens (operators, digits and closing brackets); trees are kept when
``min_length < length < max_length`` (LRA: 500 and 2000) and drawn again otherwise, a tree growing past
``max_length`` being abandoned early (the kept trees are distributed exactly as with plain rejection).
Sources are written as LRA writes them, each operator application wrapped in parentheses:
``[MAX 2 9 ]`` reads ``( ( ( [MAX 2 ) 9 ) ] )``. The target is the value of the expression.
Splits are drawn one after another from one ``random.Random(seed)``.
"""
from __future__ import annotations

import random
from pathlib import Path

from tasks.lra.data.listops import END, HEADER, OPERATORS, RELEASE_FOLDER, SPLIT_FILES
from tasks.lra.generators import write_file

LRA_SIZES = {"train": 96_000, "valid": 2_000, "test": 2_000}


class _TooLong(Exception):
    pass


def apply(operator: str, values: list[int]) -> int:
    """The value of one operator node."""
    if operator == "[MIN":
        return min(values)
    if operator == "[MAX":
        return max(values)
    if operator == "[MED":
        ordered, mid = sorted(values), len(values) // 2
        return ordered[mid] if len(values) % 2 else (ordered[mid - 1] + ordered[mid]) // 2
    if operator == "[SM":
        return sum(values) % 10
    raise ValueError(f"unknown ListOps operator {operator!r}; valid operators: {list(OPERATORS)}")


class TreeSampler:
    """Draws (source string, value, length) triples from LRA's grammar."""

    def __init__(self, rng: random.Random, max_depth: int = 10, max_args: int = 10, value_p: float = 0.25):
        if max_args < 2 or max_depth < 1 or not 0.0 <= value_p <= 1.0:
            raise ValueError(
                f"need max_args >= 2, max_depth >= 1, 0 <= value_p <= 1; got {max_args}, {max_depth}, {value_p}"
            )
        self.rng, self.max_depth, self.max_args, self.value_p = rng, max_depth, max_args, value_p

    def tree(self, max_length: int) -> tuple[str, int, int]:
        budget = [max_length]
        return self._node(1, budget)

    def _node(self, depth: int, budget: list[int]) -> tuple[str, int, int]:
        rng = self.rng
        r = rng.random() if depth < self.max_depth else 1.0
        if r > self.value_p:
            return self._spend(budget, 1, str(value := rng.randrange(10))), value, 1
        n_args = rng.randint(2, self.max_args)
        children = [self._node(depth + 1, budget) for _ in range(n_args)]
        operator = rng.choice(OPERATORS)
        self._spend(budget, 2, "")
        source = f"( {operator} {children[0][0]} )"
        for child in children[1:]:
            source = f"( {source} {child[0]} )"
        source = f"( {source} {END} )"
        return source, apply(operator, [c[1] for c in children]), 2 + sum(c[2] for c in children)

    @staticmethod
    def _spend(budget: list[int], tokens: int, result: str) -> str:
        budget[0] -= tokens
        if budget[0] < 0:
            raise _TooLong
        return result


def sample_examples(
    rng: random.Random, n: int, min_length: int, max_length: int, **grammar
) -> list[tuple[str, int]]:
    """``n`` (source, target) pairs with ``min_length < length < max_length``."""
    if min_length + 1 >= max_length:
        raise ValueError(f"need min_length + 1 < max_length, got {min_length} and {max_length}")
    sampler, examples = TreeSampler(rng, **grammar), []
    while len(examples) < n:
        try:
            source, value, length = sampler.tree(max_length - 1)
        except _TooLong:
            continue
        if length > min_length:
            examples.append((source, value))
    return examples


def write_listops(
    out: str | Path,
    seed: int = 0,
    sizes: dict[str, int] | None = None,
    min_length: int = 500,
    max_length: int = 2000,
    max_depth: int = 10,
    max_args: int = 10,
    value_p: float = 0.25,
) -> Path:
    """Write ``<out>/listops-1000/basic_{train,val,test}.tsv``; returns that folder."""
    sizes = LRA_SIZES if sizes is None else sizes
    rng, folder = random.Random(seed), Path(out) / RELEASE_FOLDER
    grammar = {"max_depth": max_depth, "max_args": max_args, "value_p": value_p}
    for split, name in SPLIT_FILES.items():
        rows = sample_examples(rng, sizes[split], min_length, max_length, **grammar)
        lines = ["\t".join(HEADER), *(f"{source}\t{target}" for source, target in rows)]
        write_file(folder / name, "\n".join(lines) + "\n")
    return folder
