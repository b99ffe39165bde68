"""``python -m harness.analyze {locality,proposition,gradient-deviation} ...``: the paper's diagnostics.

Each writes CSV and PNG into every run folder it reads (``RUN_DIR/analysis/``) and the comparison across
runs into ``--out`` (default ``results/analysis``). Examples::

    python -m harness.analyze locality results/runs/lm/*/cpu/seed0-*          # Figure 2
    python -m harness.analyze proposition results/runs/lm/{vanilla,elu}/cpu/seed0-*
    python -m harness.analyze gradient-deviation RUN_DIR ...                  # Table 2 (record_gradients=true)
    python -m harness.analyze locality --untrained vanilla elu --length 512   # no training: checks the machinery
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from harness.analyze.diagnostics import locality_table, proposition_tables
from harness.analyze.files import save_figure, write_csv
from harness.analyze.gradient_deviation import gradient_deviation, read_stats
from harness.analyze.locality import DEFAULT_RATIOS
from harness.analyze.plots import (
    gradient_deviation_figure,
    gradient_norms_figure,
    jacobian_figure,
    locality_figure,
)
from harness.analyze.sources import ANALYSIS_FOLDER, AnalysisSource, run_source, untrained_source
from harness.checkpoint import CheckpointError
from harness.run_record import read_record

DEFAULT_OUT = Path("results/analysis")


def ratio_list(text: str) -> list[float]:
    try:
        ratios = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"--ratios must be comma-separated numbers in [0, 1], got {text!r}") from error
    if not ratios or any(not 0 <= r <= 1 for r in ratios):
        raise argparse.ArgumentTypeError(f"--ratios must be comma-separated numbers in [0, 1], got {text!r}")
    return sorted(ratios)


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="*", type=Path, metavar="RUN_DIR",
                        help="finished run folders (record.json + checkpoints/best.pt); outputs go to RUN_DIR/analysis")
    parser.add_argument("--split", default=None, help="runs: the split fed to the model (default: validation)")
    parser.add_argument("--untrained", nargs="+", default=[], metavar="BACKEND",
                        help="freshly initialised backbones of these backends (checks the machinery)")
    parser.add_argument("--bidirectional", action="store_true", help="untrained models: bidirectional")
    parser.add_argument("--length", type=int, default=256, help="untrained models: tokens per sequence")
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--n-layers", type=int, default=2)
    parser.add_argument("--n-heads", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=4, help="sequences per batch (default 4)")
    parser.add_argument("--batches", type=int, default=4, help="batches to average over (default 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder of the comparison across sources")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness.analyze", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    locality = commands.add_parser("locality", help="locally accumulated attention (Figure 2)")
    add_source_arguments(locality)
    locality.add_argument("--ratios", type=ratio_list, default=list(DEFAULT_RATIOS),
                          help="comma-separated neighbourhood ratios (default 0,0.05,...,1)")
    proposition = commands.add_parser("proposition", help="distribution of |dp_ij/ds_ik| (the Proposition)")
    add_source_arguments(proposition)
    proposition.add_argument("--rows", type=int, default=64, help="query rows sampled per attention map")
    deviation = commands.add_parser("gradient-deviation", help="relative std of q/k/v gradients (Table 2)")
    deviation.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR",
                           help="runs trained with trainer.record_gradients=true")
    deviation.add_argument("--window", type=int, default=50, help="updates per window (default 50)")
    deviation.add_argument("--skip", type=int, default=None, help="first updates left out (default: the warm-up)")
    deviation.add_argument("--group", default="qkv", choices=["q", "k", "v", "qk", "qkv"],
                           help="which weights' gradient (default qkv: q, k and v together)")
    deviation.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder of the comparison across runs")
    return parser


def sources(args: argparse.Namespace) -> list[AnalysisSource]:
    found = [run_source(run, args.split, args.batch_size, args.batches) for run in args.runs]
    found += [
        untrained_source(
            name, d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads, causal=not args.bidirectional,
            length=args.length, batch_size=args.batch_size, n_batches=args.batches, seed=args.seed,
        )
        for name in args.untrained
    ]
    if not found:
        raise SystemExit("nothing to analyse: give run folders (RUN_DIR ...) or --untrained BACKEND ...")
    labels = [source.label for source in found]
    for source in found:
        if labels.count(source.label) > 1 and source.out_dir is not None:
            source.label = f"{source.label} ({source.out_dir.parent.name})"  # e.g. two seeds of one backend
    return found


def write_outputs(folder: Path, tables: dict[str, pd.DataFrame], figures: dict[str, Figure]) -> None:
    for name, table in tables.items():
        print(f"wrote {write_csv(table, folder / name)}")
    for name, figure in figures.items():
        print(f"wrote {save_figure(figure, folder / name)}")
        plt.close(figure)


def locality_command(args: argparse.Namespace) -> None:
    per_source = []
    for source in sources(args):
        table = locality_table(source, args.ratios)
        if source.out_dir is not None:
            write_outputs(source.out_dir, {"locality.csv": table}, {"locality.png": locality_figure(table)})
        per_source.append(table)
    table = pd.concat(per_source, ignore_index=True)
    write_outputs(args.out, {"locality.csv": table}, {"locality.png": locality_figure(table)})
    overall = table[table["layer"].astype(str) == "all"]
    print(overall.pivot(index="ratio", columns="label", values="score").round(3).to_string())


def proposition_command(args: argparse.Namespace) -> None:
    summaries, histograms = [], []
    for source in sources(args):
        summary, histogram = proposition_tables(source, args.rows, args.seed)
        if source.out_dir is not None:
            tables = {"proposition_summary.csv": summary, "proposition_histogram.csv": histogram}
            write_outputs(source.out_dir, tables, {"proposition.png": jacobian_figure(histogram)})
        summaries.append(summary)
        histograms.append(histogram)
    summary, histogram = pd.concat(summaries, ignore_index=True), pd.concat(histograms, ignore_index=True)
    tables = {"proposition_summary.csv": summary, "proposition_histogram.csv": histogram}
    write_outputs(args.out, tables, {"proposition.png": jacobian_figure(histogram)})
    print(summary.to_string(index=False))


def gradient_deviation_command(args: argparse.Namespace) -> None:
    rows = []
    paper = paper_gradient_deviation()
    for run in args.runs:
        record = read_record(run) or {}
        skip = args.skip
        if skip is None:  # the warm-up, where the learning rate still ramps up
            skip = int(record.get("config", {}).get("trainer", {}).get("warmup_steps", 0))
        stats = read_stats(run)
        table = gradient_deviation(stats, args.window, skip)
        figures = {"gradient_deviation.png": gradient_norms_figure(stats, args.window, args.group)}
        write_outputs(Path(run) / ANALYSIS_FOLDER, {"gradient_deviation.csv": table}, figures)
        overall = table[(table["layer"].astype(str) == "all") & (table["group"] == args.group)]
        if overall.empty:
            raise ValueError(f"{run}: no gradients of group {args.group!r}; recorded groups: "
                             f"{sorted(stats['group'].unique())}")
        overall = overall.iloc[0]
        backend = record.get("backend", Path(run).name)
        rows.append({"label": backend, "backend": backend, "seed": record.get("seed"), "run": str(run),
                     "group": args.group,
                     "window": args.window, "skip": skip, "updates": int(overall["updates"]),
                     "deviation": overall["deviation"], "whole_run": overall["whole_run"],
                     "paper": paper.get(backend, float("nan"))})
    table = pd.DataFrame(rows)
    write_outputs(args.out, {"table2.csv": table}, {"table2.png": gradient_deviation_figure(table)})
    print(table.drop(columns=["run"]).to_string(index=False))


def paper_gradient_deviation() -> dict[str, float]:
    """backend -> the paper's Table 2 value (results/paper/table2.csv), empty when the file is absent."""
    path = Path(__file__).resolve().parents[2] / "results" / "paper" / "table2.csv"
    if not path.is_file():
        return {}
    paper = pd.read_csv(path)
    return dict(zip(paper["backend"], pd.to_numeric(paper["gradient_deviation"], errors="coerce")))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {"locality": locality_command, "proposition": proposition_command,
                "gradient-deviation": gradient_deviation_command}
    try:
        commands[args.command](args)
    except (FileNotFoundError, ValueError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
