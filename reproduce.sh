#!/usr/bin/env bash
# Reproduce the paper's tables and plots with one command (docs/reproduce.md):
#   ./reproduce.sh                                  # the core claims at cpu scale, then the report (<= 45 min, 2 cores)
#   ./reproduce.sh table4 table11 --scale smoke     # some tables, in seconds
#   ./reproduce.sh all --scale paper --seeds 3 --launcher slurm
#   ./reproduce.sh --help                           # every option
# Reruns skip completed runs and resume interrupted ones. PYTHON picks the interpreter (default: python).
set -euo pipefail
cd "$(dirname "$0")"
exec "${PYTHON:-python}" -m harness.report.reproduce "$@"
