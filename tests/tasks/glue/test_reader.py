"""GLUE loaders on small files written here in each official layout, and on the real CoLA / SST-2 files."""
from pathlib import Path

import pytest
import torch

import tasks
from tasks.glue.reader import GlueFormatError, read_split
from tests.tasks.rewrite import rewrite_in_place

REAL_GLUE = Path(__file__).resolve().parents[4] / "shared" / "data" / "glue"


def write(root: Path, task_dir: str, split: str, lines: list[str], bom: bool = False) -> None:
    folder = root / task_dir
    folder.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines) + "\n"
    (folder / f"{split}.tsv").write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())


def test_cola_has_no_header_and_four_columns(tmp_path):
    write(tmp_path, "CoLA", "train", ["gj04\t1\t\tThe boy ran .", 'gj04\t0\t*\t"Ran boy the .'])
    split = read_split(tmp_path, "cola", "train")
    assert split.text_a == ["The boy ran .", '"Ran boy the .'] and split.labels == [1, 0] and split.text_b is None


def test_cola_bad_label_names_file_and_line(tmp_path):
    write(tmp_path, "CoLA", "dev", ["gj04\t1\t\tfine .", "gj04\t1\t\tfine .", "gj04\t2\t\tbad label ."])
    with pytest.raises(GlueFormatError, match=r"CoLA/dev\.tsv:3: label '2' is not one of \['0', '1'\]"):
        read_split(tmp_path, "cola", "dev")


def test_sst2_header_and_wrong_column_count(tmp_path):
    write(tmp_path, "SST-2", "train", ["sentence\tlabel", "a fine film \t1", "a dull one\t0"])
    assert read_split(tmp_path, "sst2", "train").labels == [1, 0]
    write(tmp_path, "SST-2", "dev", ["sentence\tlabel", "a fine film\t1", "no label here"])
    message = r"SST-2/dev\.tsv:3: found 1 tab-separated column\(s\), not 2; expected rows of sentence"
    with pytest.raises(GlueFormatError, match=message):
        read_split(tmp_path, "sst2", "dev")


def test_wrong_header_is_rejected(tmp_path):
    write(tmp_path, "SST-2", "train", ["text\tlabel", "a fine film\t1"])
    with pytest.raises(GlueFormatError, match=r"train\.tsv:1: header .* expected \['sentence', 'label'\]"):
        read_split(tmp_path, "sst2", "train")


def test_mrpc_header_with_byte_order_mark(tmp_path):
    lines = ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String", "1\t702876\t702977\tA man ran .\tA man was running .",
             "0\t2108705\t2108831\tHe sold it .\tShe bought it ."]
    write(tmp_path, "MRPC", "train", lines, bom=True)
    split = read_split(tmp_path, "mrpc", "train")
    assert split.labels == [1, 0] and split.text_a[1] == "He sold it ." and split.text_b[0] == "A man was running ."


def test_qqp_malformed_rows_are_skipped_and_counted(tmp_path):
    lines = ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate", "0\t1\t2\tWhy ?\tHow come ?\t1",
             "1\t3\t4\tA question broken by a newline", "continued here ?\tOther ?\t0",
             "2\t5\t6\tWhat ?\tWhich ?\t", "3\t7\t8\tWho ?\tWhom ?\t0"]
    write(tmp_path, "QQP", "dev", lines)
    split = read_split(tmp_path, "qqp", "dev")
    assert split.labels == [1, 0] and split.text_b == ["How come ?", "Whom ?"] and split.skipped == 3


def test_qnli_and_rte_string_labels(tmp_path):
    write(tmp_path, "QNLI", "dev", ["index\tquestion\tsentence\tlabel", "0\tWho ?\tHe did .\tnot_entailment",
                                    "1\tWhat ?\tIt .\tentailment"])
    assert read_split(tmp_path, "qnli", "dev").labels == [1, 0]
    write(tmp_path, "RTE", "train", ["index\tsentence1\tsentence2\tlabel", "0\tA b .\tA .\tentailment"])
    assert read_split(tmp_path, "rte", "train").text_b == ["A ."]


def test_mnli_text_in_columns_8_and_9_and_label_last(tmp_path):
    train_header = ("index promptID pairID genre sentence1_binary_parse sentence2_binary_parse sentence1_parse "
                    "sentence2_parse sentence1 sentence2 label1 gold_label").replace(" ", "\t")
    dev_header = train_header.replace("label1", "label1\tlabel2\tlabel3\tlabel4\tlabel5")
    row = "0\t1\t1e\tfiction\t( a b )\t( c )\t(ROOT a b)\t(ROOT c)\tPremise here .\tHypothesis .\t{labels}"
    write(tmp_path, "MNLI", "train", [train_header, row.format(labels="neutral\tneutral")])
    write(tmp_path, "MNLI", "dev_mismatched", [dev_header, row.format(labels="neutral\t" * 5 + "contradiction")])
    train, dev = read_split(tmp_path, "mnli", "train"), read_split(tmp_path, "mnli", "dev_mismatched")
    assert (train.text_a, train.text_b, train.labels) == (["Premise here ."], ["Hypothesis ."], [2])
    assert dev.labels == [0]


def test_stsb_regression_scores_and_range(tmp_path):
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    write(tmp_path, "STS-B", "train", [header, "0\tmain\tMSRvid\t2012\t1\tnone\tnone\tA plane .\tA jet .\t4.250"])
    assert read_split(tmp_path, "stsb", "train").labels == [4.25]
    write(tmp_path, "STS-B", "dev", [header, "0\tmain\tMSRvid\t2012\t1\tnone\tnone\tA .\tB .\t5.5"])
    with pytest.raises(GlueFormatError, match=r"dev\.tsv:2: score 5.5 is outside \[0.0, 5.0\]"):
        read_split(tmp_path, "stsb", "dev")


def test_task_folder_or_glue_root_and_missing_files(tmp_path):
    write(tmp_path, "SST-2", "train", ["sentence\tlabel", "fine\t1"])
    assert len(read_split(tmp_path / "SST-2", "sst2", "train")) == 1
    with pytest.raises(FileNotFoundError, match=r"expected the official files \['train.tsv', 'dev.tsv'\]"):
        read_split(tmp_path, "sst2", "dev")
    with pytest.raises(ValueError, match="valid splits"):
        read_split(tmp_path, "mnli", "dev")
    with pytest.raises(ValueError, match="valid choices"):
        read_split(tmp_path, "wnli", "train")


def test_no_examples_names_the_file_and_the_line_after_the_last(tmp_path):
    write(tmp_path, "SST-2", "dev", ["sentence\tlabel"])
    with pytest.raises(GlueFormatError, match=r"SST-2/dev\.tsv:2: end of file with no examples"):
        read_split(tmp_path, "sst2", "dev")


def test_a_file_replaced_in_place_is_read_again(tmp_path):
    """GLUE's cache (the BPE trained on the training texts) is keyed on the texts themselves: a same-sized
    replacement with the same modification time trains a new tokenizer, and the data is the new file's."""
    write(tmp_path / "data", "SST-2", "train", ["sentence\tlabel"] + ["a fine film\t1", "a dull one\t0"] * 20)
    write(tmp_path / "data", "SST-2", "dev", ["sentence\tlabel", "a fine one\t1", "a dull film\t0"])

    def prepared(cache: str) -> tasks.Task:
        data = {"source": "files", "path": str(tmp_path / "data"), "cache_dir": str(tmp_path / cache)}
        task = tasks.build({"name": "glue/sst2", "init_from": None, "tokenizer": {"vocab_size": 300}, "data": data})
        task.prepare()
        return task

    first = prepared("cache")
    rewrite_in_place(tmp_path / "data" / "SST-2" / "train.tsv", b"a fine film\t1", b"zzz qqq xxx\t0")
    again, fresh = prepared("cache"), prepared("fresh-cache")
    assert again.data["train"].text_a[0] == "zzz qqq xxx" and again.data["train"].labels[0] == 0
    assert again.tokenizer.encode(["zzz qqq"]) == fresh.tokenizer.encode(["zzz qqq"])
    assert first.tokenizer.encode(["zzz qqq"]) != fresh.tokenizer.encode(["zzz qqq"])
    assert all(torch.equal(a, b) for a, b in zip(again.encoded["train"][0], fresh.encoded["train"][0]))


@pytest.mark.skipif(not REAL_GLUE.is_dir(), reason="real GLUE files not available")
@pytest.mark.parametrize(("task", "sizes"), [("cola", (8551, 1043)), ("sst2", (67349, 872))])
def test_real_glue_row_counts(task, sizes):
    counts = tuple(len(read_split(REAL_GLUE, task, split)) for split in ("train", "dev"))
    assert counts == sizes
