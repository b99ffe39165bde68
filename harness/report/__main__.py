"""``python -m harness.report``: build the report from what is under the results folder."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from harness.experiments import table_names
from harness.report.paper import PAPER_DIR
from harness.report.report import build_report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness.report", description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=Path("results"),
                        help="folder holding runs/, bench/ and analysis/ (default: results)")
    parser.add_argument("--out", type=Path, default=None, help="report folder (default: <results>/report)")
    parser.add_argument("--paper", type=Path, default=PAPER_DIR, help="folder of the paper's CSVs")
    parser.add_argument("--scale", nargs="+", default=None, help="scales to report (default: every scale found)")
    parser.add_argument("--tables", nargs="+", default=None, choices=table_names(), metavar="TABLE",
                        help=f"tables to build (default: all of {', '.join(table_names())})")
    parser.add_argument("--readme", type=Path, default=None,
                        help="also rewrite this README's generated results section (between its two markers)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    index = build_report(args.results, args.out, args.paper, args.scale, args.tables, args.readme)
    print(f"report: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
