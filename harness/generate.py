"""``python -m harness.generate RUN_FOLDER --prompt "..." --max-new-tokens N [--temperature T] [--top-k K]
[--seed S] [--check] [--cache-dir DIR]``: sample from a trained causal LM run with its recurrent (state-based)
decoding.

Loads the run's configuration from its record, prepares its data (for the vocabulary: the built-in corpus is
regenerated deterministically, real data read from the recorded path), builds the model and loads the best
checkpoint verified and with ``weights_only=True``, as the trainer does. Generation only reads the run folder
and the recorded data; what preparing the data caches goes to the user's own cache (``--cache-dir``, by
default ``$ATTENTION_ZOO_CACHE/data`` or ``.cache/data`` as for training), never to the folder the record
names: that is the cache of whoever trained the run (``task.data.cache_dir`` does not change a run's result).

The prompt is split on whitespace like the corpus (an empty prompt starts after an end of line). ``--check``
recomputes the logits of the whole generated text with the parallel forward and prints the largest difference
from the decoded ones.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from omegaconf import OmegaConf

import tasks
from harness.checkpoint import CheckpointError, load_verified
from harness.config import ConfigError, validate
from harness.run_record import read_record


def user_cache_dir() -> Path:
    """The data cache of whoever runs this: where training would put it (conf/task/*.yaml's default)."""
    return Path(os.environ.get("ATTENTION_ZOO_CACHE", ".cache")) / "data"


def load_run(run_dir: Path, cache_dir: str | Path | None = None):
    """(model in eval mode, task) of a completed or checkpointed causal LM run; data caches go to ``cache_dir``
    (the user's own, :func:`user_cache_dir`, by default), never to the one recorded in the run."""
    record = read_record(run_dir)
    if record is None:
        raise SystemExit(f"{run_dir} has no readable record.json: not a run folder")
    if record.get("task") != "lm":
        raise SystemExit(f"{run_dir} is a {record.get('task')!r} run; generation needs a causal LM run (task=lm)")
    config = copy.deepcopy(record["config"])
    config.setdefault("task", {}).setdefault("data", {})["cache_dir"] = str(cache_dir or user_cache_dir())
    try:
        typed = validate(OmegaConf.create(config))
    except ConfigError as err:
        raise SystemExit(f"{run_dir}: its recorded configuration no longer validates: {err}") from None
    task = tasks.build(typed.task)
    task.prepare()
    model = task.build_model(typed.attention.as_mapping(), asdict(typed.model))
    try:
        best = load_verified(run_dir / "checkpoints" / "best.pt")
    except CheckpointError as err:
        raise SystemExit(f"cannot load the best checkpoint: {err}") from None
    model.load_state_dict(best["model"])
    return model.eval(), task


def sample(logits: torch.Tensor, temperature: float, top_k: int | None, generator: torch.Generator) -> torch.Tensor:
    """``logits[B, V]`` -> ``[B]``: greedy at temperature 0, else softmax(logits / T) over the top k."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, -torch.inf)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]


@torch.no_grad()
def generate(model, prompt: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
             seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``prompt[B, P]`` -> (generated tokens ``[B, max_new_tokens]``, the logits each was sampled from
    ``[B, max_new_tokens, V]``), decoding from the model's recurrent state."""
    generator = torch.Generator().manual_seed(seed)
    state = model.init_state(prompt.shape[0])
    logits, state = model.step(prompt, state)
    tokens, used = [], []
    for _ in range(max_new_tokens):
        used.append(logits[:, -1])
        token = sample(logits[:, -1], temperature, top_k, generator)
        tokens.append(token)
        logits, state = model.step(token[:, None], state)
    return torch.stack(tokens, 1), torch.stack(used, 1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m harness.generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a causal LM run folder (results/runs/lm/<backend>/...)")
    parser.add_argument("--prompt", default="", help="words of the corpus's vocabulary, separated by spaces")
    parser.add_argument("--max-new-tokens", type=int, default=50)
    parser.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", action="store_true", help="compare with the parallel forward's logits")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where preparing the data may cache (default: $ATTENTION_ZOO_CACHE/data or .cache/data; "
                             "never the cache folder recorded in the run)")
    args = parser.parse_args(argv)
    if args.max_new_tokens < 1 or args.temperature < 0 or (args.top_k is not None and args.top_k < 1):
        parser.error("--max-new-tokens and --top-k must be at least 1, --temperature at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model, task = load_run(args.run_dir, args.cache_dir)
    vocab = task.vocab
    words = args.prompt.split() or ["<eos>"]
    unknown = [w for w in words if w not in vocab.index]
    if unknown:
        print(f"note: {len(unknown)} prompt word(s) not in the vocabulary, read as <unk>: {unknown[:10]}",
              file=sys.stderr)
    prompt = torch.tensor([vocab.encode(words)])
    started = time.perf_counter()
    tokens, logits = generate(model, prompt, args.max_new_tokens, args.temperature, args.top_k, args.seed)
    seconds = time.perf_counter() - started
    text = " ".join(vocab.decode(tokens[0])).replace(" <eos> ", "\n").replace("<eos>", "\n")
    print(f"{' '.join(words)} | {text}")
    print(f"{args.max_new_tokens} tokens in {seconds:.2f} s ({args.max_new_tokens / seconds:.1f} tokens/s, "
          "prefill included)", file=sys.stderr)
    if args.check:
        with torch.no_grad():
            parallel = model(torch.cat([prompt, tokens], 1))[:, prompt.shape[1] - 1 : -1]
        difference = (parallel - logits).abs().max().item()
        relative = difference / parallel.abs().max().item()
        print(f"check: largest |decoded - parallel| logit difference {difference:.3g} ({relative:.2g} relative) "
              f"over {tokens.shape[1]} positions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
