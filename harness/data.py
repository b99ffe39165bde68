"""Data commands: ``python -m harness.data download wikitext-103 --dest DIR`` (or wikitext-2).

Downloads the official archive (mirrors tried in order), checks its SHA-1 and its files' SHA-1s, and puts
``wiki.{train,valid,test}.tokens`` into DIR; then run with ``task.data.source=files task.data.path=DIR``.
``--url`` replaces the mirrors (e.g. a local ``file://`` copy of the same archive).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

from tasks.data.download import ARCHIVES, ChecksumError, download


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.data", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    get = commands.add_parser("download", help="fetch and verify an official dataset")
    get.add_argument("dataset", choices=sorted(ARCHIVES))
    get.add_argument("--dest", default=None, help="target folder (default: data/<dataset>)")
    get.add_argument("--url", default=None, help="fetch the same archive from this URL instead (checksums apply)")
    args = parser.parse_args(argv)

    archive = ARCHIVES[args.dataset]
    if args.url:
        archive = dataclasses.replace(archive, urls=(args.url,))
    try:
        dest = download(archive, args.dest or f"data/{args.dataset}")
    except (ConnectionError, ChecksumError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{args.dataset}: {sorted(archive.files)} verified in {dest}\n"
          f"use: python -m harness.run task.data.source=files task.data.path={dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
