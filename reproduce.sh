#!/usr/bin/env bash
# Reproduce the paper's tables and plots with one command (docs/reproduce.md):
#   ./reproduce.sh                                  # the core claims at cpu scale, 3 seeds, then the report (~1 h, 2 cores)
#   ./reproduce.sh --data wikitext-2 --data-dir DIR # the core LM claims on real text
#   ./reproduce.sh table4 table11 --scale smoke     # some tables, in seconds
#   ./reproduce.sh table4 --dry-run                 # the commands, each sweep's runs and their estimated time
#   ./reproduce.sh all --scale paper --seeds 3 --launcher slurm
#   ./reproduce.sh --help                           # every option
# Reruns skip completed runs and resume interrupted ones. PYTHON picks the interpreter (default: python).
set -euo pipefail
cd "$(dirname "$0")"
exec "${PYTHON:-python}" -m harness.reproduce "$@"
