"""Parameter counts of the paper's models, beside the paper's Params column (Tables 4 and 5).

    python -m harness.params task=lm scale=paper     # Table 4: causal LM, WikiText-103 word vocabulary
    python -m harness.params task=mlm scale=paper    # Table 5: masked LM, RoBERTa's byte-level BPE vocabulary

Each backend's model is composed from ``conf/`` exactly as ``python -m harness.run task=T attention=B scale=S``
would compose it (any other override may follow), and built on the meta device: no memory, no data. The
vocabulary is the paper's: WikiText-103's 267,735 words plus the specials, padded to a multiple of 8 as
fairseq does (267,744 entries); RoBERTa's 50,265 BPE entries. Tied weights count once.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict

import torch
from torch import nn

import tasks
from attention_zoo.registry import DELTA_AND_SSD, FEATURE_MAPS_AND_HGRN2, SUCCESSORS
from harness.compose import compose
from harness.config import validate
from harness.execute import count_parameters
from harness.report.paper import NOT_IN_PAPER, PAPER_DIR, paper_number, read_paper
from tasks.data.vocab import DEFAULT_SPECIALS
from tasks.lm import LanguageModel
from tasks.mlm.model import MaskedLanguageModel, SentenceClassifier
from tasks.mlm.task import build_encoder

WIKITEXT103_WORDS = 267_735
ROBERTA_BPE = 50_265
PAPER_TABLE = {"lm": "table4.csv", "mlm": "table5.csv"}
TOLERANCE = 0.01


def vocab_size(task: str) -> int:
    if task == "lm":
        n = WIKITEXT103_WORDS + len(DEFAULT_SPECIALS)
        return n + (-n) % 8  # fairseq's padding factor
    return ROBERTA_BPE


def build_on_meta(task_name: str, backend: str, overrides: Sequence[str] = ()) -> nn.Module:
    """The model ``harness.run`` would train for (task, backend, overrides), on the meta device, with the paper's
    vocabulary (a GLUE classifier: RoBERTa's BPE, the pretrained encoder's shape; an LRA or recall task: its own)."""
    cfg = validate(compose([f"task={task_name}", f"attention={backend}", *overrides]))
    task, attention, model = tasks.build(cfg.task), cfg.attention.as_mapping(), asdict(cfg.model)
    family = task_name.split("/", 1)[0]
    with torch.device("meta"):
        if family == "lm":
            backbone = task.build_backbone(attention, model, max_len=cfg.task.seq_len)
            return LanguageModel(backbone, vocab_size("lm"), 0, model.get("scale_embeddings", True))
        if family == "mlm":
            return MaskedLanguageModel(build_encoder(task, attention, model, vocab_size("mlm"), 1, cfg.task.seq_len))
        if family == "glue":
            encoder = build_encoder(task, attention, model, vocab_size("mlm"), 1, cfg.task.max_len)
            return SentenceClassifier(encoder, task.format.num_classes, model.get("dropout", 0.1))
        if family == "lra":
            return task.build_model_for_length(attention, model, cfg.task.seq_len)
        if family == "recall":  # its own small vocabulary and input length, from the task's settings alone
            return task.build_model(attention, model)
    raise ValueError(f"no meta-device model for task={task_name}; valid: lm, mlm, glue/*, lra/*, recall/*")


def compare(task_name: str, overrides: Sequence[str] = ()) -> list[dict]:
    """One row per backend of the paper's table: our count, the paper's, the relative difference."""
    paper = read_paper(PAPER_DIR, PAPER_TABLE[task_name])
    rows = []
    for _, line in paper.iterrows():
        counts = count_parameters(build_on_meta(task_name, line["backend"], overrides))
        theirs = paper_number(line["params_m"])
        ours = counts["total"] / 1e6
        diff = (ours - theirs) / theirs if theirs else None
        rows.append({"method": line["method"], "backend": line["backend"], "ours_m": ours, "paper_m": theirs,
                     "diff": diff, "agrees": diff is not None and abs(diff) <= TOLERANCE,
                     "non_embedding_m": counts["non_embedding"] / 1e6})
    beyond = (*SUCCESSORS, *DELTA_AND_SSD, *FEATURE_MAPS_AND_HGRN2) if task_name == "lm" else ()
    for backend in beyond:  # rows beyond the paper, at the same width and depth
        counts = count_parameters(build_on_meta(task_name, backend, overrides))
        rows.append({"method": f"{backend} {NOT_IN_PAPER}", "backend": backend, "ours_m": counts["total"] / 1e6,
                     "paper_m": None, "diff": None, "agrees": None, "non_embedding_m": counts["non_embedding"] / 1e6})
    return rows


def render(rows: list[dict], task_name: str) -> str:
    lines = [f"task={task_name}, vocabulary {vocab_size(task_name):,}; agreement within {TOLERANCE:.0%}",
             f"{'method':<30}{'ours (M)':>10}{'paper (M)':>11}{'diff':>9}{'non-emb (M)':>13}  agrees"]
    for r in rows:
        diff = f"{r['diff']:+.2%}" if r["diff"] is not None else "-"
        agrees = "-" if r["agrees"] is None else "yes" if r["agrees"] else "NO"
        lines.append(f"{r['method']:<30}{r['ours_m']:>10.2f}{r['paper_m'] or float('nan'):>11.2f}{diff:>9}"
                     f"{r['non_embedding_m']:>13.2f}  {agrees}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    task_name = next((a.split("=", 1)[1] for a in args if a.startswith("task=")), "lm")
    overrides = [a for a in args if not a.startswith("task=")] or ["scale=paper"]
    print(render(compare(task_name, overrides), task_name))


if __name__ == "__main__":
    main()
