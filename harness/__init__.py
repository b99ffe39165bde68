"""harness: entry points, trainer, run records, reports, speed bench, diagnostics."""
import os

# Marks a policy the harness set itself, so that a process started by a harness process (./reproduce.sh runs
# the benchmark as a child) does not take the inherited passive policy for the user's.
POLICY_FROM_HARNESS = "ATTENTION_ZOO_OMP_POLICY_FROM_HARNESS"
# The user's own OpenMP wait policy, if any (the speed benchmarks' cells run with it, or with torch's default).
USER_OMP_WAIT_POLICY = None if os.environ.get(POLICY_FROM_HARNESS) == "1" else os.environ.get("OMP_WAIT_POLICY")
# Set by harness.bench.runner for a benchmark cell: keep OpenMP's defaults, which are what a plain
# `import torch` gets (measured on an idle 2-core machine: the passive policy below makes a training step of
# the cpu-scale LM at N=1K 1.4x slower for vanilla and 1.9x slower for TransNormer T2, whose many small
# kernels each wake sleeping threads).
KEEP_OMP_DEFAULTS = "ATTENTION_ZOO_KEEP_OMP_DEFAULTS"

# Idle OpenMP threads sleep instead of spinning (must be set before torch loads): on a small or shared CPU
# machine spinning threads steal the cores the work needs (measured: training steps 7x slower on a loaded
# 2-core machine with the default policy). Set OMP_WAIT_POLICY yourself to override.
if os.environ.get(KEEP_OMP_DEFAULTS) != "1" and "OMP_WAIT_POLICY" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    os.environ[POLICY_FROM_HARNESS] = "1"
