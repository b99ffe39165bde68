"""``python -m harness.bench <command>``: one sub-command per benchmark module.

A benchmark module provides ``add_arguments(parser)`` and ``run(args) -> int`` and a docstring whose
first line is its help; add it to ``COMMANDS`` to make it a sub-command.
"""
from __future__ import annotations

import argparse
import importlib

COMMANDS = {
    "kernels": "harness.bench.kernels",  # one token mixer per backend, mode and length
    "table7": "harness.bench.table7",  # the paper's Table 7: model-level training and inference speed
    "decode": "harness.bench.decode",  # recurrent decoding: time per token and state memory against context
    "compile": "harness.bench.compile",  # trainer.compile: whole training runs with and without torch.compile
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness.bench", description="Speed and memory benchmarks.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        doc = (module.__doc__ or name).strip()
        command = commands.add_parser(name, help=doc.splitlines()[0], description=doc,
                                      formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(command)
        command.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Console entry point (``attention-zoo-bench``) and ``python -m harness.bench``."""
    args = build_parser().parse_args(argv)
    return args.handler(args)
