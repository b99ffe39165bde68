"""harness: entry points, trainer, run records, reports, speed bench, diagnostics."""
import os

# Idle OpenMP threads sleep instead of spinning (must be set before torch loads): on a small or shared CPU
# machine spinning threads steal the cores the work needs (measured: training steps 7x slower on a loaded
# 2-core machine with the default policy). Set OMP_WAIT_POLICY yourself to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
