"""The official-format loaders on small fixture files, quirks included, and their errors on bad input."""
from __future__ import annotations

import numpy as np
import pytest

from tasks.lra.data.aan import read_aan
from tasks.lra.data.cifar import read_cifar, to_grayscale
from tasks.lra.data.examples import BYTE_OFFSET
from tasks.lra.data.imdb import read_imdb
from tasks.lra.data.layout import find_folder
from tasks.lra.data.listops import VOCAB, read_listops
from tasks.lra.data.pathfinder import read_pathfinder
from tests.tasks.lra import fixtures

LISTOPS_ROWS = {
    "train": [("( ( ( [MAX 2 ) 9 ) ] )", "9"), ("( ( [SM ( ( ( [MIN 4 ) 7 ) ] ) ) 3 ) ] )", "7")],
    "valid": [("( ( [MED 1 ) 5 ) ] )", "3")],
    "test": [("4", "4")],
}


# ------------------------------------------------------------------------------------------- ListOps
def test_listops_nested_release_header_and_tokens(tmp_path):
    fixtures.listops_release(tmp_path, LISTOPS_ROWS, nested=True)
    splits = read_listops(tmp_path)
    assert {k: len(v) for k, v in splits.items()} == {"train": 2, "valid": 1, "test": 1}
    first = splits["train"].inputs[0][0]
    assert first.tolist() == [VOCAB["[MAX"], VOCAB["2"], VOCAB["9"], VOCAB["]"]]  # parentheses dropped, ] kept
    assert splits["train"].labels.tolist() == [9, 7]
    assert len(splits["train"].inputs[0][1]) == 7  # [SM [MIN 4 7 ] 3 ]


def test_listops_flattened_layout_and_truncation(tmp_path):
    fixtures.listops_release(tmp_path, LISTOPS_ROWS, nested=False)
    splits = read_listops(tmp_path, max_len=3)
    assert max(len(s) for s in splits["train"].inputs[0]) == 3


def test_listops_pointing_at_the_dataset_folder(tmp_path):
    folder = fixtures.listops_release(tmp_path, LISTOPS_ROWS)
    assert len(read_listops(folder)["train"]) == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Src\tTarget\n1\t1\n", "expected the header"),
        ("Source\tTarget\n( [MAX 1 ] )\t1\textra\n", ":2: found 3 tab-separated columns, not 2"),
        ("Source\tTarget\n( [MAX 1 ] )\t12\n", ":2: Target '12' is not a digit 0-9"),
        ("Source\tTarget\n3\t3\n( [FIRST 1 ] )\t1\n", ":3: unknown ListOps token(s) ['[FIRST']"),
    ],
)
def test_listops_bad_input_names_file_and_line(tmp_path, text, message):
    folder = fixtures.listops_release(tmp_path, LISTOPS_ROWS)
    (folder / "basic_train.tsv").write_text(text)
    with pytest.raises(ValueError, match="basic_train.tsv") as err:
        read_listops(tmp_path)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Source\tTarget\n( ( ) )\t1\n", ":2: the Source '( ( ) )' has no token (an empty example)"),
        ("Source\tTarget\n\t1\n", ":2: the Source '' has no token"),
        ("Source\tTarget\n", ":2: end of file with no example"),
        ("", ":1: end of file with no example"),
    ],
)
def test_listops_empty_examples_and_files_are_refused(tmp_path, text, message):
    folder = fixtures.listops_release(tmp_path, LISTOPS_ROWS)
    (folder / "basic_val.tsv").write_text(text)
    with pytest.raises(ValueError) as err:
        read_listops(tmp_path)
    assert str(err.value).startswith(f"{folder / 'basic_val.tsv'}{message}") and "; expected " in str(err.value)


def test_missing_folder_lists_the_paths_tried(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        read_listops(tmp_path)
    assert "listops-1000" in str(err.value) and "lra_release/lra_release/listops-1000" in str(err.value)


def test_find_folder_accepts_every_layout(tmp_path):
    for root in (tmp_path / "a", tmp_path / "b" / "lra_release", tmp_path / "c" / "lra_release" / "lra_release"):
        (root / "pathfinder32" / "curv_baseline" / "metadata").mkdir(parents=True)
    relative = "pathfinder32/curv_baseline"
    assert find_folder(tmp_path / "a", relative, "metadata") == tmp_path / "a" / relative
    assert find_folder(tmp_path / "b", relative, "metadata") == tmp_path / "b" / "lra_release" / relative
    assert find_folder(tmp_path / "c", relative, "metadata").parts[-4:-2] == ("lra_release", "lra_release")
    inside = tmp_path / "a" / "pathfinder32"
    assert find_folder(inside, relative, "metadata") == inside / "curv_baseline"


# ---------------------------------------------------------------------------------------------- IMDB
def test_imdb_bytes_labels_and_order(tmp_path):
    fixtures.imdb(tmp_path, {
        "train": {"pos": {"10_9.txt": b"great", "2_8.txt": "caf\u00e9".encode()}, "neg": {"0_1.txt": b"bad"}},
        "test": {"pos": {"0_7.txt": b"ok"}, "neg": {"0_2.txt": b"no<br />"}},
    })
    (tmp_path / "aclImdb" / "train" / "unsup").mkdir()  # ignored, as IMDB's unlabelled reviews
    splits = read_imdb(tmp_path, max_len=4)
    train = splits["train"]
    assert train.ids == ["train/neg/0_1.txt", "train/pos/2_8.txt", "train/pos/10_9.txt"]  # numeric order
    assert train.labels.tolist() == [0, 1, 1]
    assert train.inputs[0][1].tolist() == [b + BYTE_OFFSET for b in "caf\u00e9".encode()[:4]]  # bytes, cut at 4
    assert len(splits["test"]) == 2


def test_imdb_empty_review_is_refused(tmp_path):
    folder = fixtures.imdb(tmp_path, {split: {"pos": {"0_9.txt": b"x"}, "neg": {"1_1.txt": b"y"}}
                                      for split in ("train", "test")})
    (folder / "test" / "neg" / "1_1.txt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"aclImdb/test/neg/1_1.txt:1: the review is empty; expected the text"):
        read_imdb(tmp_path)


def test_imdb_missing_polarity_folder(tmp_path):
    fixtures.imdb(tmp_path, {"train": {"pos": {"0_9.txt": b"x"}}, "test": {"pos": {"0_9.txt": b"x"}}})
    with pytest.raises(FileNotFoundError, match=r"aclImdb/train/neg"):
        read_imdb(tmp_path)


# ----------------------------------------------------------------------------------------------- AAN
def test_aan_float_labels_pairs_and_truncation(tmp_path):
    rows = ["1.0\tP1\tP2\tabcdef\tuvw", "0.0\tP3\tP4\txy\tz", "1\tP5\tP6\tq\tr", "0\tP7\tP8\ts\tt"]
    fixtures.aan_release(tmp_path, rows, nested=True)
    splits = read_aan(tmp_path, max_len=4)
    train = splits["train"]
    assert train.labels.tolist() == [1, 0, 1, 0]
    assert len(train.inputs) == 2
    assert train.inputs[0][0].tolist() == [b + BYTE_OFFSET for b in b"abcd"]
    assert train.inputs[1][0].tolist() == [b + BYTE_OFFSET for b in b"uvw"]
    assert set(splits) == {"train", "valid", "test"}


@pytest.mark.parametrize(
    ("row", "message"),
    [("1.0\tP1\tP2\tonly four", "found 4 tab-separated columns, not 5"),
     ("0.5\tP1\tP2\ta\tb", "label '0.5' is not 0 or 1"),
     ("1\tP1\tP2\ta\t", r"text2 is empty \(an empty example\)"), ("1\tP1\tP2\t\t", "text1 and text2 are empty")],
)
def test_aan_bad_rows(tmp_path, row, message):
    fixtures.aan_release(tmp_path, ["1.0\tP1\tP2\ta\tb", row])
    with pytest.raises(ValueError, match=message) as err:
        read_aan(tmp_path)
    assert "new_aan_pairs.train.tsv:2" in str(err.value)


# -------------------------------------------------------------------------------------------- CIFAR-10
def test_cifar_records_to_grey_tokens(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(12, 3, 32, 32), dtype=np.uint8)
    images[0] = 0
    images[0, 0, 0, 0] = 255  # one pure-red pixel at the top left
    records = [fixtures.cifar_record(i % 10, image) for i, image in enumerate(images)]
    fixtures.cifar(tmp_path, records[:10], records[10:])
    splits = read_cifar(tmp_path)
    assert len(splits["train"]) == 10 and len(splits["test"]) == 2
    assert splits["train"].labels.tolist() == list(range(10))
    first = splits["train"].inputs[0][0]
    assert first.shape == (1024,)
    assert first[0] == int(0.2989 * 255.5) + BYTE_OFFSET and first[1] == BYTE_OFFSET  # row-major, TF's conversion
    weights = np.array([0.2989, 0.5870, 0.1140])
    expected = np.floor(np.einsum("chw,c->hw", images[5] / 255.0, weights) * 255.5).reshape(-1)
    assert np.abs(splits["train"].inputs[0][5].astype(int) - BYTE_OFFSET - expected).max() <= 1
    assert to_grayscale(np.full((1, 3, 2, 2), 255, np.uint8)).max() == 255


def test_cifar_bad_sizes_and_labels(tmp_path):
    record = fixtures.cifar_record(3, np.zeros((3, 32, 32)))
    folder = fixtures.cifar(tmp_path, [record] * 5, [record])
    (folder / "test_batch.bin").write_bytes(record[:-1])
    with pytest.raises(ValueError, match="test_batch.bin: size 3072 bytes is not a positive multiple of 3073"):
        read_cifar(tmp_path)
    (folder / "test_batch.bin").write_bytes(bytes([12]) + record[1:])
    with pytest.raises(ValueError, match="record 0 has label byte 12"):
        read_cifar(tmp_path)
    (folder / "data_batch_3.bin").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3.bin"):
        read_cifar(tmp_path)


# ------------------------------------------------------------------------------------------ Pathfinder
def _image(value: int, side: int = 32) -> np.ndarray:
    pixels = np.zeros((side, side), np.uint8)
    pixels[0, 0] = value
    return pixels


def test_pathfinder_metadata_order_and_empty_image(tmp_path):
    images = {k: [(_image(10 * k + i), (k + i) % 2) for i in range(2)] for k in (0, 2, 10)}
    images[2][1] = (None, 1)  # the release's known empty image
    fixtures.pathfinder_release(tmp_path, images)
    examples = read_pathfinder(tmp_path, 32, "curv_contour_length_14")
    assert examples.ids == ["imgs/0/sample_0.png", "imgs/0/sample_1.png", "imgs/2/sample_0.png",
                            "imgs/10/sample_0.png", "imgs/10/sample_1.png"]  # numeric order, empty one skipped
    assert [int(s[0]) - BYTE_OFFSET for s in examples.inputs[0]] == [0, 1, 20, 100, 101]
    assert examples.labels.tolist() == [0, 1, 0, 0, 1]
    assert examples.inputs[0][0].shape == (1024,)


def test_pathx_reads_pathfinder128(tmp_path):
    fixtures.pathfinder_release(tmp_path, {0: [(_image(5, 128), 1)]}, side=128)
    examples = read_pathfinder(tmp_path, 128, "curv_contour_length_14")
    assert examples.inputs[0][0].shape == (128 * 128,)


def test_pathfinder_bad_images_and_metadata(tmp_path):
    folder = fixtures.pathfinder_release(tmp_path, {0: [(_image(1), 0), (_image(2), 1)]})
    (folder / "imgs" / "0" / "sample_1.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"sample_1.png: unreadable image .*expected a 32x32 PNG"):
        read_pathfinder(tmp_path)
    fixtures.png(folder / "imgs" / "0" / "sample_1.png", np.zeros((16, 16)))
    with pytest.raises(ValueError, match=r"sample_1.png: image is 16x16; expected 32x32"):
        read_pathfinder(tmp_path)
    (folder / "imgs" / "0" / "sample_1.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"0.npy:2: lists .*sample_1.png"):
        read_pathfinder(tmp_path)
    (folder / "metadata" / "0.npy").write_text("imgs/0 sample_0.png 0 maybe\n")
    with pytest.raises(ValueError, match=r"0.npy:1: found .*; expected lines 'imgs/<k> sample_<i>.png <i> <label"):
        read_pathfinder(tmp_path)
    with pytest.raises(ValueError, match="unknown Pathfinder difficulty 'hard'"):
        read_pathfinder(tmp_path, difficulty="hard")
