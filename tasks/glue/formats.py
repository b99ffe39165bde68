"""The official GLUE file layouts (PAPER.md section 6): one ``GlueFormat`` per task.

Every file is tab-separated with no quoting (csv ``QUOTE_NONE``). Columns are 0-based; a negative index counts
from the end (MNLI's label is the last column whatever the split). A file with a header row has exactly as
many columns as its header; CoLA has no header and four columns.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GlueFormat:
    """Where the text and the label live in one task's files, and what the labels may be.

    ``labels``: the label strings in class-index order; ``None`` means regression (a float score in
    ``score_range``). ``headers``: the header row of each split (``None``: no header, ``n_columns`` columns).
    ``skip_malformed``: rows with the wrong number of columns are skipped and counted instead of failing.
    """

    name: str
    directory: str
    headers: dict[str, tuple[str, ...] | None]
    text_a: int
    text_b: int | None
    label: int
    labels: tuple[str, ...] | None
    n_columns: int | None = None
    skip_malformed: bool = False
    score_range: tuple[float, float] = (0.0, 5.0)

    @property
    def splits(self) -> list[str]:
        return list(self.headers)

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def num_classes(self) -> int:
        """Outputs of the head: the number of classes, or 1 for regression."""
        return 1 if self.labels is None else len(self.labels)

    @property
    def eval_splits(self) -> list[str]:
        """The labelled splits a model is evaluated on (every split but train)."""
        return [s for s in self.headers if s != "train"]

    def file_name(self, split: str) -> str:
        return f"{split}.tsv"

    def columns(self, split: str) -> int:
        header = self.headers[split]
        return len(header) if header is not None else int(self.n_columns)


_MNLI_TRAIN = (
    "index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
    "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "gold_label",
)
_MNLI_DEV = _MNLI_TRAIN[:-1] + ("label2", "label3", "label4", "label5", "gold_label")
_ENTAILMENT = ("entailment", "not_entailment")

GLUE_FORMATS: dict[str, GlueFormat] = {
    f.name: f
    for f in (
        GlueFormat("cola", "CoLA", {"train": None, "dev": None}, 3, None, 1, ("0", "1"), n_columns=4),
        GlueFormat("sst2", "SST-2", dict.fromkeys(("train", "dev"), ("sentence", "label")), 0, None, 1, ("0", "1")),
        GlueFormat(
            "mrpc", "MRPC", dict.fromkeys(("train", "dev"), ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String")),
            3, 4, 0, ("0", "1"),
        ),
        GlueFormat(
            "qqp", "QQP", dict.fromkeys(("train", "dev"), ("id", "qid1", "qid2", "question1", "question2",
                                                           "is_duplicate")),
            3, 4, 5, ("0", "1"), skip_malformed=True,
        ),
        GlueFormat("qnli", "QNLI", dict.fromkeys(("train", "dev"), ("index", "question", "sentence", "label")),
                   1, 2, 3, _ENTAILMENT),
        GlueFormat("rte", "RTE", dict.fromkeys(("train", "dev"), ("index", "sentence1", "sentence2", "label")),
                   1, 2, 3, _ENTAILMENT),
        GlueFormat(
            "mnli", "MNLI", {"train": _MNLI_TRAIN, "dev_matched": _MNLI_DEV, "dev_mismatched": _MNLI_DEV},
            8, 9, -1, ("contradiction", "entailment", "neutral"),
        ),
        GlueFormat(
            "stsb", "STS-B", dict.fromkeys(("train", "dev"), ("index", "genre", "filename", "year", "old_index",
                                                             "source1", "source2", "sentence1", "sentence2",
                                                             "score")),
            7, 8, -1, None,
        ),
    )
}


def get_format(name: str) -> GlueFormat:
    if name not in GLUE_FORMATS:
        raise ValueError(f"unknown GLUE task {name!r}; valid choices: {sorted(GLUE_FORMATS)}")
    return GLUE_FORMATS[name]
