"""Deprecated alias: ``python -m harness.report.reproduce`` is ``python -m harness.reproduce`` (what ./reproduce.sh
runs); the orchestrator moved out of the report, which it runs, into its own package."""
import runpy
import sys

if __name__ == "__main__":
    print("python -m harness.report.reproduce is deprecated: use ./reproduce.sh or python -m harness.reproduce",
          file=sys.stderr)
    runpy.run_module("harness.reproduce", run_name="__main__", alter_sys=True)
