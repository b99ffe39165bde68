"""The built-in generators: deterministic under a seed, balanced labels, the official formats (read back by
the loaders), and labels that depend on the whole document rather than on its opening."""
from __future__ import annotations

import random
import re
from collections import Counter

import numpy as np
import pytest

from tasks.lra.data.aan import read_aan
from tasks.lra.data.cifar import read_cifar
from tasks.lra.data.imdb import read_imdb
from tasks.lra.data.listops import read_listops, tokenise
from tasks.lra.data.pathfinder import read_pathfinder
from tasks.lra.generators.image import write_image
from tasks.lra.generators.listops import TreeSampler, apply, sample_examples, write_listops
from tasks.lra.generators.pathfinder import Geometry, PathfinderPainter, write_pathfinder
from tasks.lra.generators.retrieval import write_retrieval
from tasks.lra.generators.text import write_text
from tasks.lra.generators.words import NEGATIVE_WORDS, POSITIVE_WORDS, TOPIC_WORDS


def tree_files(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------- ListOps
def evaluate_tokens(tokens: list[str]) -> int:
    """An independent stack evaluator of a tokenised ListOps expression."""
    stack: list = []
    for token in tokens:
        if token == "]":
            args = []
            while not isinstance(stack[-1], str):
                args.append(stack.pop())
            stack.append(apply(stack.pop(), args[::-1]))
        else:
            stack.append(token if token.startswith("[") else int(token))
    assert len(stack) == 1
    return stack[0]


def test_listops_med_truncates_like_numpy():
    assert apply("[MED", [1, 2]) == int(np.median([1, 2])) == 1
    assert apply("[MED", [3, 9, 4]) == 4 and apply("[SM", [9, 9, 5]) == 3


def test_listops_files_deterministic_and_correct(tmp_path):
    sizes = {"train": 200, "valid": 20, "test": 20}
    write_listops(tmp_path / "a", seed=3, sizes=sizes, min_length=10, max_length=60)
    write_listops(tmp_path / "b", seed=3, sizes=sizes, min_length=10, max_length=60)
    write_listops(tmp_path / "c", seed=4, sizes=sizes, min_length=10, max_length=60)
    assert tree_files(tmp_path / "a") == tree_files(tmp_path / "b") != tree_files(tmp_path / "c")
    text = (tmp_path / "a" / "listops-1000" / "basic_train.tsv").read_text()
    assert text.startswith("Source\tTarget\n")
    for line in text.splitlines()[1:]:
        source, target = line.split("\t")
        tokens = tokenise(source)
        assert 10 < len(tokens) < 60
        assert evaluate_tokens(tokens) == int(target)
    splits = read_listops(tmp_path / "a")
    assert {k: len(v) for k, v in splits.items()} == sizes


def test_listops_written_with_lra_parentheses():
    source, value, length = TreeSampler(random.Random(0)).tree(10_000)
    while length < 4:
        source, value, length = TreeSampler(random.Random(length)).tree(10_000)
    assert re.fullmatch(r"[()\[\]A-Z0-9 ]+", source) and source.startswith("( ")
    assert source.count("(") == source.count(")") and len(tokenise(source)) == length


def test_listops_label_spread():
    targets = Counter(t for _, t in sample_examples(random.Random(0), 1000, 10, 50))
    assert set(targets) == set(range(10))
    assert max(targets.values()) / 1000 < 0.3  # LRA's grammar is not balanced, but no class dominates


# ---------------------------------------------------------------------------------------------- Text
def _counts(text: str) -> tuple[int, int]:
    words = re.findall(r"[a-z]+", text.lower())
    return sum(w in POSITIVE_WORDS for w in words), sum(w in NEGATIVE_WORDS for w in words)


def test_text_imdb_layout_balance_and_determinism(tmp_path):
    kwargs = {"sizes": {"train": 40, "test": 20}, "min_bytes": 300, "max_bytes": 600}
    write_text(tmp_path / "a", seed=1, **kwargs)
    write_text(tmp_path / "b", seed=1, **kwargs)
    assert tree_files(tmp_path / "a") == tree_files(tmp_path / "b")
    for name in tree_files(tmp_path / "a"):
        match = re.fullmatch(r"aclImdb/(train|test)/(pos|neg)/\d+_(\d+)\.txt", name)
        assert match, name
        assert (int(match.group(3)) >= 7) == (match.group(2) == "pos")
    splits = read_imdb(tmp_path / "a")
    assert np.bincount(splits["train"].labels).tolist() == [20, 20]
    assert all(len(s) <= 600 for s in splits["train"].inputs[0])


def test_text_label_needs_the_whole_review(tmp_path):
    write_text(tmp_path, seed=0, sizes={"train": 400, "test": 2}, min_bytes=800, max_bytes=1600)
    whole = prefix = 0
    for path in sorted((tmp_path / "aclImdb" / "train").rglob("*.txt")):
        positive = path.parent.name == "pos"
        text = path.read_text()
        pos, neg = _counts(text)
        whole += (pos > neg) == positive
        pos, neg = _counts(text[: len(text) // 4])
        prefix += (pos > neg) == positive if pos != neg else 0.5
    assert whole == 400  # counting over the review decides it
    assert prefix / 400 < 0.75  # its first quarter does not


# ----------------------------------------------------------------------------------------- Retrieval
def _main_topic(text: str) -> str:
    words = re.findall(r"[a-z]+", text.lower())
    counts = {topic: sum(w in keywords for w in words) for topic, keywords in TOPIC_WORDS.items()}
    return max(counts, key=counts.get)


def test_retrieval_aan_format_balance_and_labels(tmp_path):
    sizes = {"train": 60, "valid": 10, "test": 10}
    write_retrieval(tmp_path / "a", seed=2, sizes=sizes, min_bytes=400, max_bytes=800)
    write_retrieval(tmp_path / "b", seed=2, sizes=sizes, min_bytes=400, max_bytes=800)
    assert tree_files(tmp_path / "a") == tree_files(tmp_path / "b")
    lines = (tmp_path / "a" / "tsv_data" / "new_aan_pairs.train.tsv").read_text().splitlines()
    assert Counter(line.split("\t")[0] for line in lines) == {"1.0": 30, "0.0": 30}  # AAN's float labels
    for line in lines:
        label, _, _, text1, text2 = line.split("\t")
        assert (_main_topic(text1) == _main_topic(text2)) == (label == "1.0")
    splits = read_aan(tmp_path / "a")
    assert {k: len(v) for k, v in splits.items()} == sizes
    write_retrieval(tmp_path / "c", seed=2, sizes=sizes, min_bytes=100, max_bytes=200, main=3, distractor_topics=0,
                    n_topics=2)
    topics = {_main_topic(line.split("\t")[3]) for line in
              (tmp_path / "c" / "tsv_data" / "new_aan_pairs.test.tsv").read_text().splitlines()}
    assert topics == set(list(TOPIC_WORDS)[:2])


# --------------------------------------------------------------------------------------------- Image
def test_image_cifar_records_from_digits(tmp_path):
    write_image(tmp_path / "a", seed=5, sizes={"train": 500, "test": 100})
    write_image(tmp_path / "b", seed=5, sizes={"train": 500, "test": 100})
    assert tree_files(tmp_path / "a") == tree_files(tmp_path / "b")
    assert (tmp_path / "a" / "cifar-10-batches-bin" / "data_batch_1.bin").stat().st_size == 100 * 3073
    splits = read_cifar(tmp_path / "a")
    share = np.bincount(splits["train"].labels, minlength=10) / 500
    assert share.min() > 0.05 and share.max() < 0.15
    grey = np.stack(splits["train"].inputs[0][:50]).astype(float)
    assert grey.std(axis=1).min() > 10  # a visible digit on every canvas
    with pytest.raises(ValueError, match="equal data batches"):
        write_image(tmp_path / "c", sizes={"train": 501, "test": 1})
    with pytest.raises(ValueError, match=r"min_contrast must be in \[0, 160"):
        write_image(tmp_path / "c", sizes={"train": 5, "test": 1}, min_contrast=200)


# ---------------------------------------------------------------------------------------- Pathfinder
def test_pathfinder_markers_follow_the_label():
    painter = PathfinderPainter(Geometry.for_side(32, "curv_contour_length_14"), random.Random(0))
    for label in (1, 0, 1, 0):
        paddles, markers = painter.layout(label)
        n = painter.g.contour_length
        ends = [(paddles[0][0], paddles[n - 1][1]), (paddles[n][0], paddles[2 * n - 1][1])]
        if label:
            assert sorted(markers) == sorted(ends[0])
        else:
            assert markers[0] in ends[0] and markers[1] in ends[1]


def test_pathfinder_release_layout_determinism_and_balance(tmp_path):
    kwargs = {"total": 24, "images_per_folder": 8, "difficulty": "curv_baseline"}
    write_pathfinder(tmp_path / "a", seed=7, **kwargs)
    write_pathfinder(tmp_path / "b", seed=7, workers=2, **kwargs)
    write_pathfinder(tmp_path / "c", seed=8, **kwargs)
    files = tree_files(tmp_path / "a")
    assert files == tree_files(tmp_path / "b") != tree_files(tmp_path / "c")  # workers do not change the files
    meta = files["pathfinder32/curv_baseline/metadata/1.npy"].decode().splitlines()
    assert meta[0].split()[:3] == ["imgs/1", "sample_0.png", "0"]
    examples = read_pathfinder(tmp_path / "a", 32, "curv_baseline")
    assert len(examples) == 24 and examples.labels.sum() == 12
    pixels = np.stack(examples.inputs[0]).astype(int) - 1
    assert pixels.max() == 255 and (pixels > 0).mean() > 0.05  # white strokes on black


def test_pathx_is_drawn_at_128(tmp_path):
    write_pathfinder(tmp_path, seed=0, total=2, side=128, difficulty="curv_baseline")
    assert read_pathfinder(tmp_path, 128, "curv_baseline").inputs[0][0].shape == (128 * 128,)
