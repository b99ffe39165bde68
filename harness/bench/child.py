"""The child side of every benchmark cell: what the process that measures one cell shares with the others.

``harness.bench.skeleton.run_in_subprocess`` starts ``python -m MODULE SPEC_JSON RESULT_PATH``; MODULE's main
is ``serve(argv, parse, measure)``: it reads the spec, measures it and writes the result as JSON to
RESULT_PATH. A failure, out of memory included, is written as a status, not raised: the sweep goes on.
Kept light (no planning, no rendering): every cell process imports it.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from zoo_io.atomic import write_json

OOM_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory")
Spec = TypeVar("Spec")


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    return isinstance(error, RuntimeError) and any(text in str(error).lower() for text in OOM_MESSAGES)


def failure(error: BaseException) -> dict[str, Any]:
    """A failed cell's result: ``oom`` or ``error``, with the exception's type and first line."""
    first_line = (str(error).strip().splitlines() or [""])[0]
    return {"status": "oom" if is_out_of_memory(error) else "error",
            "error": f"{type(error).__name__}: {first_line[:300]}"}


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously: a timer must not stop before it)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def serve(argv: list[str], parse: Callable[[dict[str, Any]], Spec], measure: Callable[[Spec], dict[str, Any]]) -> int:
    """``python -m MODULE SPEC_JSON RESULT_PATH``: ``measure(parse(spec))`` written to RESULT_PATH, every
    failure as a status (``failure``); the result always has a ``status``."""
    if len(argv) != 2:
        module = getattr(sys.modules["__main__"].__spec__, "name", "MODULE")  # the cell module run with -m
        print(f"usage: python -m {module} SPEC_JSON RESULT_PATH", file=sys.stderr)
        return 2
    try:
        result = measure(parse(json.loads(argv[0])))
    except BaseException as error:  # noqa: BLE001 - every failure becomes a recorded cell
        result = failure(error)
    write_json(argv[1], result)
    return 0
